//! `cyfr host` requiring mutual TLS: a router (`cyfr up --host https://…`) presenting a
//! client certificate from the configured CA, with an allowed name, runs components there;
//! one without a certificate, with another CA's, or with a name the host does not allow is
//! refused during the handshake. The signed host token stays required.

use crate::support::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A CA made at test time.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf for `names` (DNS or IP SANs) with usage `eku`: (cert PEM, key PEM) files.
    fn leaf(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        eku: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let p = dir.join(format!("{file}.crt"));
        std::fs::write(&p, self.issuer.pem()).unwrap();
        p
    }
}

struct Pki {
    dir: TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    router_a: (PathBuf, PathBuf),
    router_b: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let dir = TempDir::new("pki");
    let ca = Ca::new("cyfr test CA");
    let other = Ca::new("another CA");
    Pki {
        ca: ca.write(&dir.0, "ca"),
        server: ca.leaf(
            &dir.0,
            "host",
            &["127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        router_a: ca.leaf(
            &dir.0,
            "router-a",
            &["router-a.cyfr.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        router_b: ca.leaf(
            &dir.0,
            "router-b",
            &["router-b.cyfr.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        stranger: other.leaf(
            &dir.0,
            "stranger",
            &["router-a.cyfr.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        dir,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `cyfr host` over TLS requiring client certificates from the test CA, naming router-a only.
fn mtls_host(k: &Pki) -> Host {
    Host::start_with(&[
        "--tls-cert",
        path(&k.server.0),
        "--tls-key",
        path(&k.server.1),
        "--client-ca",
        path(&k.ca),
        "--allow-router",
        "router-a.cyfr.test",
    ])
}

/// A router dispatching to `host`, trusting the test CA, presenting `identity` if any.
fn router(k: &Pki, host: &Host, identity: Option<&(PathBuf, PathBuf)>) -> Server {
    let mut env = vec![("CYFR_HOST_CA", path(&k.ca))];
    if let Some((c, key)) = identity {
        env.push(("CYFR_HOST_CLIENT_CERT", path(c)));
        env.push(("CYFR_HOST_CLIENT_KEY", path(key)));
    }
    Server::start_env(&["--host", &host.spec], &env)
}

fn host_log(h: &Host) -> String {
    std::fs::read_to_string(h.data.0.join("host.log")).unwrap_or_default()
}

#[test]
fn a_host_requiring_mtls_serves_only_allowed_routers_with_the_cas_certificate() {
    let k = pki();
    let h = mtls_host(&k);
    assert!(h.url.starts_with("https://127.0.0.1:"), "{}", h.url);

    // (a) router-a: the CA's certificate, an allowed name: runs go through.
    let a = router(&k, &h, Some(&k.router_a));
    let jt = register_json_transform(&a);
    let r = a.ok(
        &a.admin,
        "execution",
        json!({"action": "run", "reference": jt, "input": {"data": [4, 5]}}),
    );
    assert_eq!(r["result"]["sum"], 9);
    assert_eq!(h.artifacts(), 1, "the run happened on the mTLS host");

    // (b) no client certificate, (c) one from another CA, (d) the CA's, but router-b, a name
    // the host does not allow: each refused, the run unavailable (the one host refused it).
    for (who, identity, logged) in [
        ("no certificate", None, "TLS handshake refused"),
        ("another CA", Some(&k.stranger), "TLS handshake refused"),
        ("router-b", Some(&k.router_b), "names no allowed router"),
    ] {
        let before = host_log(&h).matches(logged).count();
        let s = router(&k, &h, identity);
        let jt = register_json_transform(&s);
        let r = s.call(
            &s.admin,
            "execution",
            json!({"action": "run", "reference": jt, "input": {"data": [1]}}),
        );
        assert_eq!(code(&r), -33202, "{who}: {r}");
        // The host logs the refusal after it sent the alert the router already acted on:
        // under load the line can come a moment after the answer.
        let logged_it = (0..200).any(|_| {
            let seen = host_log(&h).matches(logged).count() > before;
            if !seen {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            seen
        });
        assert!(
            logged_it,
            "{who}: the host did not refuse it at TLS: {}",
            host_log(&h)
        );
    }
}

/// A raw HTTP/1.1 exchange over TLS as `identity`; the response text, or `None` when the
/// host refused the connection.
fn raw_tls(
    k: &Pki,
    url: &str,
    identity: Option<&(PathBuf, PathBuf)>,
    request: &str,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = cyfr_host::tls::client_config(
        Some(&k.ca),
        identity.map(|(c, key)| (c.as_path(), key.as_path())),
    )
    .unwrap();
    let addr = url.strip_prefix("https://").unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        // In TLS 1.3 the host's verdict on our certificate arrives after our Finished: the
        // write may succeed and the read then fails.
        tls.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.ok()?;
        (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
    })
}

#[test]
fn mtls_does_not_replace_the_host_token() {
    let k = pki();
    let h = mtls_host(&k);
    let req = "POST /v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    // An allowed router's certificate but no token: refused by the token check.
    let r = raw_tls(&k, &h.url, Some(&k.router_a), req).expect("an allowed router is served");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("a host token is required"), "{r}");
    // Without a certificate there is no HTTP at all.
    assert_eq!(raw_tls(&k, &h.url, None, req), None);
    assert_eq!(raw_tls(&k, &h.url, Some(&k.stranger), req), None);
    assert_eq!(raw_tls(&k, &h.url, Some(&k.router_b), req), None);
    drop(k.dir);
}

#[test]
fn allow_router_without_a_client_ca_is_refused_at_start() {
    let k = pki();
    let out = cyfr()
        .args([
            "host",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            path(&k.server.0),
            "--tls-key",
            path(&k.server.1),
            "--allow-router",
            "router-a.cyfr.test",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("client-ca"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
