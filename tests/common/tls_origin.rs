//! An https test origin: a TLS terminator (rustls server over std sockets, two threads per
//! connection) in front of the upstream simulator (`tether_perf`), so every endpoint of the
//! simulator (SSE with ids and Last-Event-ID, faults, plain responses) is served over TLS.
//! Certificates are made here with rcgen: a private CA, and leaf certificates for chosen names.
//! Loopback only; every thread ends when its sockets close, and `Drop` stops the listener.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, SupportedProtocolVersion};

/// A private CA, written to a PEM file for `--upstream-ca`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert: CertificateDer<'static>,
    /// The CA's certificate as PEM, in a file of its own (removed on drop).
    pub pem_path: PathBuf,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem_path = std::env::temp_dir().join(format!(
            "tether-test-ca-{}-{}.pem",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&pem_path, cert.pem()).expect("write the CA file");
        TestCa {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            pem_path,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tether test origin");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// A leaf certificate written to PEM files, for `--tls-cert`/`--tls-key` (removed on drop).
pub struct LeafFiles {
    /// The leaf then the CA (a full chain).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The leaf's DER, to recognise it in a handshake.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A certificate for `names`, signed by this CA, written as PEM files.
    pub fn leaf_files(&self, names: &[&str]) -> LeafFiles {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "tether test server");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
        let base =
            std::env::temp_dir().join(format!("tether-test-leaf-{}-{n}", std::process::id()));
        let cert_path = base.with_extension("crt");
        let key_path = base.with_extension("key");
        let ca_pem = std::fs::read_to_string(&self.pem_path).expect("the CA file");
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_pem)).expect("write the cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        LeafFiles {
            cert_path,
            key_path,
            der: cert.der().clone(),
        }
    }
}

impl LeafFiles {
    pub fn cert(&self) -> &str {
        self.cert_path.to_str().unwrap()
    }

    pub fn key(&self) -> &str {
        self.key_path.to_str().unwrap()
    }
}

impl Drop for LeafFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert_path);
        let _ = std::fs::remove_file(&self.key_path);
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pem_path);
    }
}

static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);

/// The TLS versions an origin accepts.
pub enum Versions {
    /// TLS 1.3 only.
    Tls13,
    /// TLS 1.2 only.
    Tls12,
}

static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
static TLS12_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];

impl Versions {
    fn list(&self) -> &'static [&'static SupportedProtocolVersion] {
        match self {
            Versions::Tls13 => &TLS13_ONLY,
            Versions::Tls12 => &TLS12_ONLY,
        }
    }
}

/// The TLS terminator in front of a simulator.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The simulator behind it (its request log shows what tether sent); None in front of
    /// another server (`in_front_of`).
    pub backend: Option<tether_perf::UpstreamHandle>,
    stop: Arc<AtomicBool>,
    /// TLS connections accepted (handshake done).
    handshakes: Arc<AtomicUsize>,
    /// The SNI names clients sent (None: no SNI, as for an IP literal).
    sni: Arc<Mutex<Vec<Option<String>>>>,
    /// The TCP sockets of the connections alive (clones), for `kill_connections`.
    live: Arc<Mutex<Vec<TcpStream>>>,
    /// Protocol versions negotiated, one per connection ("TLSv1_3"...).
    versions: Arc<Mutex<Vec<String>>>,
}

impl TlsOrigin {
    /// Listens on 127.0.0.1 with `leaf`, accepting `versions`, in front of a fresh simulator.
    pub fn start(leaf: Leaf, versions: Versions) -> TlsOrigin {
        let backend = super::origin();
        let mut origin = TlsOrigin::in_front_of(backend.addr(), leaf, versions);
        origin.backend = Some(backend);
        origin
    }

    /// The same in front of the plain server at `backend` (an MCP server, a WebSocket echo).
    pub fn in_front_of(backend_addr: SocketAddr, leaf: Leaf, versions: Versions) -> TlsOrigin {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions.list())
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS origin");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let sni = Arc::new(Mutex::new(Vec::new()));
        let live = Arc::new(Mutex::new(Vec::new()));
        let negotiated = Arc::new(Mutex::new(Vec::new()));
        {
            let (stop, handshakes, sni, live, negotiated) = (
                stop.clone(),
                handshakes.clone(),
                sni.clone(),
                live.clone(),
                negotiated.clone(),
            );
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let config = config.clone();
                    let (handshakes, sni, live, negotiated) = (
                        handshakes.clone(),
                        sni.clone(),
                        live.clone(),
                        negotiated.clone(),
                    );
                    std::thread::spawn(move || {
                        serve(
                            client,
                            config,
                            backend_addr,
                            &handshakes,
                            &sni,
                            &live,
                            &negotiated,
                        )
                    });
                }
            });
        }
        TlsOrigin {
            addr,
            backend: None,
            stop,
            handshakes,
            sni,
            live,
            versions: negotiated,
        }
    }

    /// `https://IP:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://NAME:PORT` (NAME must resolve to 127.0.0.1, e.g. localhost).
    pub fn url_named(&self, name: &str) -> String {
        format!("https://{name}:{}", self.addr.port())
    }

    /// The simulator behind it.
    pub fn sim(&self) -> &tether_perf::UpstreamHandle {
        self.backend
            .as_ref()
            .expect("a simulator behind this origin")
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// The SNI each handshake carried.
    pub fn sni(&self) -> Vec<Option<String>> {
        self.sni.lock().unwrap().clone()
    }

    /// The versions negotiated.
    pub fn versions(&self) -> Vec<String> {
        self.versions.lock().unwrap().clone()
    }

    /// Closes every live TLS connection at once, without close_notify (a crashed upstream).
    pub fn kill_connections(&self) -> usize {
        let mut live = self.live.lock().unwrap();
        let n = live.len();
        for s in live.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        n
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.kill_connections();
    }
}

/// One TLS connection: handshake, then plaintext both ways to a fresh backend connection.
#[allow(clippy::too_many_arguments)]
fn serve(
    mut client: TcpStream,
    config: Arc<ServerConfig>,
    backend: SocketAddr,
    handshakes: &AtomicUsize,
    sni: &Mutex<Vec<Option<String>>>,
    live: &Mutex<Vec<TcpStream>>,
    negotiated: &Mutex<Vec<String>>,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = client.set_nodelay(true);
    let mut conn = ServerConnection::new(config).expect("server connection");
    while conn.is_handshaking() {
        if conn.complete_io(&mut client).is_err() {
            return; // refused (wrong name on the client's side, bad version...)
        }
    }
    handshakes.fetch_add(1, Ordering::SeqCst);
    sni.lock()
        .unwrap()
        .push(conn.server_name().map(str::to_string));
    negotiated
        .lock()
        .unwrap()
        .push(format!("{:?}", conn.protocol_version().unwrap()));
    let _ = client.set_read_timeout(None);
    let Ok(mut up) = TcpStream::connect(backend) else {
        return;
    };
    let _ = up.set_nodelay(true);
    if let Ok(clone) = client.try_clone() {
        live.lock().unwrap().push(clone);
    }
    // The request may have come with the client's last handshake flight: what the handshake
    // read and decrypted goes first.
    let mut early = Vec::new();
    let _ = conn.reader().read_to_end(&mut early);
    if !early.is_empty() && up.write_all(&early).is_err() {
        return;
    }
    let conn = Arc::new(Mutex::new(conn));
    // Backend -> client: encrypt what the simulator sends; its end becomes close_notify + FIN.
    let down = {
        let (conn, mut client, mut up) = (
            conn.clone(),
            client.try_clone().expect("clone"),
            up.try_clone().expect("clone"),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match up.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut conn = conn.lock().unwrap();
                if conn.writer().write_all(&buf[..n]).is_err() {
                    break;
                }
                if write_out(&mut conn, &mut client).is_err() {
                    return;
                }
            }
            let mut conn = conn.lock().unwrap();
            conn.send_close_notify();
            let _ = write_out(&mut conn, &mut client);
            let _ = client.shutdown(Shutdown::Write);
        })
    };
    // Client -> backend: decrypt what tether sends (its requests).
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut plain = Vec::new();
        {
            let mut conn = conn.lock().unwrap();
            let mut rest = &buf[..n];
            let mut failed = false;
            while !rest.is_empty() {
                if conn.read_tls(&mut rest).is_err() || conn.process_new_packets().is_err() {
                    failed = true;
                    break;
                }
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match conn.reader().read(&mut chunk) {
                        Ok(0) => break,
                        Ok(k) => plain.extend_from_slice(&chunk[..k]),
                        Err(_) => break,
                    }
                }
            }
            // Session tickets, key updates, alerts.
            let _ = write_out(&mut conn, &mut client);
            if failed {
                break;
            }
        }
        if !plain.is_empty() && up.write_all(&plain).is_err() {
            break;
        }
    }
    let _ = up.shutdown(Shutdown::Write);
    let _ = down.join();
    let _ = client.shutdown(Shutdown::Both);
}

/// Writes all ciphertext rustls holds to the socket (blocking).
fn write_out(conn: &mut ServerConnection, sock: &mut TcpStream) -> std::io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}
