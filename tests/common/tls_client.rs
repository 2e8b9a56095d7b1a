//! TLS clients of tether for the client-side TLS tests: rustls client settings (a private CA,
//! chosen versions, ALPN), a one-off handshake that reports what was negotiated and which
//! certificate tether presented, and a bridge: a plain loopback listener whose every connection
//! goes on to tether over TLS (a rustls `ClientConnection`, two threads per connection), so the
//! plain test clients (`Client`, `SseReader`, the WebSocket helpers) speak TLS to tether
//! unchanged. The bridge reads tether only as fast as its local client reads (blocking writes),
//! so a local client that stops reading stops the TLS connection too.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tether_perf::load::any_certificate::AcceptAnyCertificate;

use super::tls_origin::TestCa;

/// Which TLS versions a client offers.
#[derive(Clone, Copy, Debug)]
pub enum Offer {
    Tls12,
    Tls13,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn versions(offer: Offer) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static V12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static V13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match offer {
        Offer::Tls12 => &V12,
        Offer::Tls13 => &V13,
    }
}

/// Client settings trusting `ca`, offering `offer` and the ALPN protocols `alpn`.
pub fn client_config(ca: &TestCa, offer: Offer, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("the CA");
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(offer))
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Client settings that accept any certificate (to see which one tether presents for a name).
pub fn any_certificate_config() -> Arc<ClientConfig> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// What a handshake with tether agreed.
#[derive(Debug)]
pub struct Handshaken {
    /// The certificate tether presented (its leaf).
    pub cert: CertificateDer<'static>,
    pub version: String,
    pub alpn: Option<Vec<u8>>,
    /// The connection, for a request after the handshake.
    pub tls: rustls::StreamOwned<ClientConnection, TcpStream>,
}

/// Connects to `addr` and does a TLS handshake as `name` (an IP: no SNI).
pub fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> Result<Handshaken, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or("no certificate")?;
    Ok(Handshaken {
        cert,
        version: format!("{:?}", conn.protocol_version().unwrap()),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        tls: rustls::StreamOwned::new(conn, tcp),
    })
}

/// A plain loopback listener whose connections go on to tether over TLS.
pub struct TlsBridge {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// The version each connection negotiated ("TLSv1_3"...).
    versions: Arc<Mutex<Vec<String>>>,
}

impl TlsBridge {
    /// Bridges to tether at `tether` with `config`, as `name`.
    pub fn start(tether: SocketAddr, config: Arc<ClientConfig>, name: &str) -> TlsBridge {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the bridge");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let name = ServerName::try_from(name.to_string()).expect("a server name");
        {
            let (stop, versions) = (stop.clone(), versions.clone());
            std::thread::spawn(move || {
                for local in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(local) = local else { continue };
                    let (config, name, versions) = (config.clone(), name.clone(), versions.clone());
                    std::thread::spawn(move || bridge(local, tether, config, name, &versions));
                }
            });
        }
        TlsBridge {
            addr,
            stop,
            versions,
        }
    }

    /// The versions negotiated so far, one per connection.
    pub fn versions(&self) -> Vec<String> {
        self.versions.lock().unwrap().clone()
    }
}

impl Drop for TlsBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Writes what rustls holds to `tcp`.
fn write_out(conn: &mut ClientConnection, tcp: &mut TcpStream) -> std::io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(tcp)?;
    }
    Ok(())
}

/// One bridged connection: handshake, then plaintext both ways.
fn bridge(
    mut local: TcpStream,
    tether: SocketAddr,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    versions: &Mutex<Vec<String>>,
) {
    let Ok(mut tcp) = TcpStream::connect(tether) else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let _ = local.set_nodelay(true);
    let mut conn = ClientConnection::new(config, name).expect("client connection");
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return;
        }
    }
    versions
        .lock()
        .unwrap()
        .push(format!("{:?}", conn.protocol_version().unwrap()));
    let conn = Arc::new(Mutex::new(conn));
    // Local -> tether: encrypt what the test client sends; its end becomes close_notify + FIN.
    {
        let (conn, mut local, mut tcp) = (
            conn.clone(),
            local.try_clone().expect("clone"),
            tcp.try_clone().expect("clone"),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match local.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut conn = conn.lock().unwrap();
                if conn.writer().write_all(&buf[..n]).is_err()
                    || write_out(&mut conn, &mut tcp).is_err()
                {
                    let _ = tcp.shutdown(Shutdown::Both);
                    return;
                }
            }
            let mut conn = conn.lock().unwrap();
            conn.send_close_notify();
            let _ = write_out(&mut conn, &mut tcp);
            let _ = tcp.shutdown(Shutdown::Write);
        });
    }
    // Tether -> local: decrypt, then write to the local client outside the lock (a client that
    // does not read blocks this thread, which then stops reading tether).
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut plain = Vec::new();
        let mut closed = false;
        {
            let mut conn = conn.lock().unwrap();
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                if conn.read_tls(&mut rest).is_err() {
                    closed = true;
                    break;
                }
                match conn.process_new_packets() {
                    Ok(state) => closed |= state.peer_has_closed(),
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match conn.reader().read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => plain.extend_from_slice(&chunk[..k]),
                    }
                }
            }
            let _ = write_out(&mut conn, &mut tcp);
        }
        if !plain.is_empty() && local.write_all(&plain).is_err() {
            let _ = tcp.shutdown(Shutdown::Both);
            return;
        }
        if closed {
            break;
        }
    }
    let _ = local.shutdown(Shutdown::Write);
}
