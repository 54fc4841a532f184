//! `secretscope certs`: a development CA and a serving certificate signed by it.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, ca.key, tls.crt and tls.key (created if missing).
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// DNS names of the serving certificate (repeatable). The API server calls
    /// <service>.<namespace>.svc.
    #[arg(long = "dns", default_values_t = ["secretscope.secretscope.svc".to_string(), "localhost".to_string()])]
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate (repeatable).
    #[arg(long = "ip", default_values_t = ["127.0.0.1".parse::<IpAddr>().unwrap_or(IpAddr::from([127, 0, 0, 1]))])]
    pub ip: Vec<IpAddr>,
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

pub struct Issued {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a fresh CA (ten years) and a serving certificate (`days`) for `dns` and `ips`.
pub fn issue(dns: &[String], ips: &[IpAddr], days: i64) -> anyhow::Result<Issued> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "secretscope development CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::hours(1);
    ca.not_after = now + Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(dns.to_vec()).context("invalid --dns name")?;
    leaf.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.distinguished_name.push(
        DnType::CommonName,
        dns.first().map(String::as_str).unwrap_or("secretscope"),
    );
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::hours(1);
    leaf.not_after = now + Duration::days(days);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Issued {
        ca_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn write(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    if args.dns.is_empty() && args.ip.is_empty() {
        anyhow::bail!("give at least one --dns or --ip for the serving certificate");
    }
    let issued = issue(&args.dns, &args.ip, args.days)?;
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    write(&args.out.join("ca.crt"), &issued.ca_pem, false)?;
    write(&args.out.join("ca.key"), &issued.ca_key_pem, true)?;
    write(&args.out.join("tls.crt"), &issued.cert_pem, false)?;
    write(&args.out.join("tls.key"), &issued.key_pem, true)?;
    let names: Vec<String> = (args.dns.iter().cloned())
        .chain(args.ip.iter().map(IpAddr::to_string))
        .collect();
    eprintln!(
        "wrote {0}/ca.crt, {0}/ca.key, {0}/tls.crt and {0}/tls.key for {1}; caBundle:",
        args.out.display(),
        names.join(", ")
    );
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(issued.ca_pem.as_bytes())
    );
    Ok(())
}
