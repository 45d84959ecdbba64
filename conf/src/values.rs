//! Parsers for typed values. Each takes the trimmed, expanded text and
//! returns the value or a description of what was expected, which the
//! getter turns into [`crate::ConfError::BadValue`] with the key and the
//! value's source.
//!
//! Units: durations take `ns`, `us`, `ms`, `s`, `m`, `h`, `d` and a bare
//! number is milliseconds (Hadoop reads a bare number in the key's default
//! unit; every Weir duration key's natural unit is the millisecond). Sizes
//! take `k`, `m`, `g`, `t`, `p` as binary multiples (1k = 1024) and a bare
//! number is bytes. Suffixes are case-insensitive; numbers are whole and
//! non-negative; a result that overflows is an error, never a wrap.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const BOOL: &str = "true or false";
pub(crate) const DURATION: &str =
    "a duration: a whole number with a unit ns, us, ms, s, m, h or d (500ms, 10s, 5m, 1h, 2d); a bare number is milliseconds";
pub(crate) const SIZE: &str =
    "a size: a whole number of bytes, or with a binary unit k, m, g, t or p (1k = 1024; 512m, 4g)";
pub(crate) const HOST_PORT: &str = "host:port with a port from 0 to 65535 (an IPv6 address in brackets: [::1]:80)";
pub(crate) const FLOAT: &str = "a finite number";
pub(crate) const PATH: &str = "a path without NUL characters";

pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    if s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(BOOL.into())
    }
}

/// An integer between `min` and `max` (the bounds of its type), which
/// the expectation names.
pub(crate) fn parse_int<T>(s: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + std::fmt::Display,
{
    s.parse::<T>().map_err(|_| format!("an integer from {min} to {max}"))
}

pub(crate) fn parse_f64(s: &str) -> Result<f64, String> {
    s.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| FLOAT.into())
}

/// Splits `10s` into (10, "s"); the number must be non-empty digits.
fn number_and_unit(s: &str) -> Option<(u64, String)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = s[..digits].parse::<u64>().ok()?;
    Some((number, s[digits..].to_ascii_lowercase()))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || String::from(DURATION);
    let (n, unit) = number_and_unit(s).ok_or_else(bad)?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs);
    let duration = match unit.as_str() {
        "ns" => Some(Duration::from_nanos(n)),
        "us" => Some(Duration::from_micros(n)),
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => None,
    };
    duration.ok_or_else(bad)
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || String::from(SIZE);
    let (n, unit) = number_and_unit(s).ok_or_else(bad)?;
    let shift = match unit.as_str() {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Comma-separated, items trimmed, empty items dropped.
pub(crate) fn parse_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// `host:port` or `[ipv6]:port`; the host is returned without brackets.
pub(crate) fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || String::from(HOST_PORT);
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        inner.parse::<Ipv6Addr>().map_err(|_| bad())?;
        inner
    } else {
        let valid = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(bad());
        }
        host
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host.to_owned(), port))
}

pub(crate) fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.contains('\0') {
        return Err(PATH.into());
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("10S", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(172_800)),
            ("250", Duration::from_millis(250)),
            ("7us", Duration::from_micros(7)),
            ("9ns", Duration::from_nanos(9)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "s", "1.5s", "-1s", "10 s", "10sec", "1w", "99999999999999999999d", "213503982334602d"] {
            assert_eq!(parse_duration(bad), Err(DURATION.to_string()), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [("512m", 512 << 20), ("4g", 4 << 30), ("4G", 4 << 30), ("1k", 1024), ("1t", 1 << 40), ("1p", 1 << 50), ("123", 123)];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "m", "1.5g", "4gb", "-1", "16384p", "1 k", "1e"] {
            assert_eq!(parse_size(bad), Err(SIZE.to_string()), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(parse_host_port("127.0.0.1:5050"), Ok(("127.0.0.1".into(), 5050)));
        assert_eq!(parse_host_port("broker-1.example.com:0"), Ok(("broker-1.example.com".into(), 0)));
        assert_eq!(parse_host_port("[::1]:80"), Ok(("::1".into(), 80)));
        assert_eq!(parse_host_port("[fe80::1%eth0]:80"), Err(HOST_PORT.into()));
        for bad in ["", "host", ":80", "host:", "host:65536", "host:-1", "host:+80", "::1:80", "[::1]", "[zz]:80", "a b:80", "[::1:80"] {
            assert_eq!(parse_host_port(bad), Err(HOST_PORT.to_string()), "{bad}");
        }
    }

    #[test]
    fn scalars_and_lists() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert_eq!(parse_bool("yes"), Err(BOOL.into()));
        assert_eq!(parse_int("65535", u16::MIN, u16::MAX), Ok(65535));
        assert_eq!(parse_int("65536", u16::MIN, u16::MAX), Err("an integer from 0 to 65535".into()));
        assert_eq!(parse_int("-5", i64::MIN, i64::MAX), Ok(-5));
        assert_eq!(parse_int("-5", u64::MIN, u64::MAX), Err("an integer from 0 to 18446744073709551615".into()));
        assert_eq!(parse_f64("0.5"), Ok(0.5));
        assert_eq!(parse_f64("NaN"), Err(FLOAT.into()));
        assert_eq!(parse_f64("inf"), Err(FLOAT.into()));
        assert_eq!(parse_list(" a, b ,,c ,"), vec!["a", "b", "c"]);
        assert!(parse_list(" , ").is_empty());
        assert_eq!(parse_path("/x/y"), Ok(PathBuf::from("/x/y")));
        assert_eq!(parse_path("a\0b"), Err(PATH.into()));
    }
}
