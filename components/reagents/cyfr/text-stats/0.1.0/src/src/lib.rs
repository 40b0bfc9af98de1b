//! `reagent:cyfr.text-stats` — counts and word frequencies for a piece of text.
//!
//! Input: `{"text": "...", "top": 10}` (`top` optional, 0..=100, default 10).
//! Output:
//! `{"chars", "bytes", "words", "unique_words", "lines", "sentences", "paragraphs",
//!   "avg_word_length", "top_words": [{"word", "count"}]}`.
//! Words are runs of letters/digits (an apostrophe inside a word is kept: "don't");
//! they are compared case-insensitively. Errors come back as
//! `{"error":{"type":"invalid_input","message":"..."}}`.

wit_bindgen::generate!({
    path: "../../../../../../guest-wit",
    world: "cyfr:reagent/reagent",
});

use serde_json::{json, Value};
use std::collections::HashMap;

struct Component;

impl exports::cyfr::reagent::compute::Guest for Component {
    fn compute(input: String) -> String {
        match run(&input) {
            Ok(v) => v.to_string(),
            Err(message) => {
                json!({"error": {"type": "invalid_input", "message": message}}).to_string()
            }
        }
    }
}

export!(Component);

const DEFAULT_TOP: u64 = 10;
const MAX_TOP: u64 = 100;

fn run(input: &str) -> Result<Value, String> {
    let input: Value =
        serde_json::from_str(input).map_err(|e| format!("input is not valid JSON: {e}"))?;
    let text = input
        .get("text")
        .and_then(Value::as_str)
        .ok_or("missing string field `text`")?;
    let top = match input.get("top") {
        None | Some(Value::Null) => DEFAULT_TOP,
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= MAX_TOP)
            .ok_or_else(|| format!("`top` must be an integer between 0 and {MAX_TOP}"))?,
    };
    Ok(stats(text, top as usize))
}

fn stats(text: &str, top: usize) -> Value {
    let words = words(text);
    let mut freq: HashMap<String, u64> = HashMap::new();
    let mut letters = 0usize;
    for w in &words {
        letters += w.chars().count();
        *freq.entry(w.to_lowercase()).or_default() += 1;
    }
    let unique = freq.len();
    let mut ranked: Vec<(String, u64)> = freq.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(top);
    let top_words: Vec<Value> = ranked
        .into_iter()
        .map(|(word, count)| json!({"word": word, "count": count}))
        .collect();

    let avg = if words.is_empty() {
        0.0
    } else {
        letters as f64 / words.len() as f64
    };
    json!({
        "chars": text.chars().count(),
        "bytes": text.len(),
        "words": words.len(),
        "unique_words": unique,
        "lines": text.lines().count(),
        "sentences": sentences(text),
        "paragraphs": paragraphs(text),
        "avg_word_length": (avg * 100.0).round() / 100.0,
        "top_words": top_words,
    })
}

/// Splits text into words: alphanumeric runs, keeping an apostrophe between letters
/// ("don't") and a `.` or `,` between digits ("2.5", "1,000").
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(pos, c)) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j].1);
        let next = chars.get(i + 1).map(|&(_, n)| n);
        let joiner = start.is_some()
            && match c {
                '\'' | '\u{2019}' => next.is_some_and(char::is_alphanumeric),
                '.' | ',' => {
                    prev.is_some_and(|p| p.is_ascii_digit())
                        && next.is_some_and(|n| n.is_ascii_digit())
                }
                _ => false,
            };
        if c.is_alphanumeric() || joiner {
            start.get_or_insert(pos);
        } else if let Some(s) = start.take() {
            out.push(&text[s..pos]);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Counts sentences. A sentence ends at a run of `.`, `!`, `?` (or `…`) that follows some
/// word characters, is followed by whitespace or the end of the text, and is not followed by a
/// lower-case word ("e.g. this" and "wait... what" do not end a sentence). Trailing text with
/// words but no terminator counts as a sentence too.
fn sentences(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let mut count = 0;
    let mut pending = false; // saw word characters since the last sentence end
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c.is_alphanumeric() {
            pending = true;
        } else if matches!(c, '.' | '!' | '?' | '\u{2026}') && pending {
            while i < chars.len()
                && matches!(
                    chars[i],
                    '.' | '!' | '?' | '\u{2026}' | '"' | '\'' | ')' | '\u{201d}'
                )
            {
                i += 1;
            }
            let at_end = i == chars.len();
            if at_end || chars[i].is_whitespace() {
                let next_word = chars[i..].iter().find(|c| !c.is_whitespace());
                if !next_word.is_some_and(|c| c.is_lowercase()) {
                    count += 1;
                    pending = false;
                }
            }
        }
    }
    count + usize::from(pending)
}

/// Counts blocks of non-blank lines.
fn paragraphs(text: &str) -> usize {
    let mut count = 0;
    let mut in_paragraph = false;
    for line in text.lines() {
        let blank = line.trim().is_empty();
        if !blank && !in_paragraph {
            count += 1;
        }
        in_paragraph = !blank;
    }
    count
}
