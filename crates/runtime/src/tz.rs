//! The local time zone for `tz_gmtoff()`, `tz_name()` and `tz_ctime()`, found once at
//! startup as staprun does (`localtime_r` of the start time): `$TZ` (a POSIX string or a
//! zoneinfo name) or `/etc/localtime`, read as TZif without libc.

/// Seconds west of UTC (stap's `tz_gmtoff()` sign) and the zone's abbreviation, at
/// `now` (seconds since the epoch), for the process environment.
pub fn local_timezone(now: i64) -> (i64, String) {
    let tz = std::env::var("TZ").ok();
    zone_for(tz.as_deref(), now, &|p| std::fs::read(p).ok())
}

/// [`local_timezone`] with the `TZ` value and the file reader given (for tests).
pub(crate) fn zone_for(
    tz: Option<&str>,
    now: i64,
    read: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> (i64, String) {
    const UTC: (i64, &str) = (0, "UTC");
    let utc = || (UTC.0, UTC.1.to_string());
    let from_file = |path: &str| {
        read(path)
            .and_then(|d| tzif_zone(&d, now))
            .map(|(east, name)| (-east, name))
    };
    match tz {
        // glibc: unset means /etc/localtime, and UTC without one.
        None => from_file("/etc/localtime").unwrap_or_else(utc),
        Some("") => utc(),
        Some(t) => {
            let name = t.strip_prefix(':').unwrap_or(t);
            let path = if name.starts_with('/') {
                name.to_string()
            } else {
                format!("/usr/share/zoneinfo/{name}")
            };
            let safe = !name.split('/').any(|c| c == "..");
            (if safe { from_file(&path) } else { None })
                .or_else(|| posix_tz(t))
                .unwrap_or_else(utc)
        }
    }
}

/// The standard-time part of a POSIX TZ string (`EST5EDT`, `<+03>-3`, `JST-9`): the
/// abbreviation and its offset in seconds west. Daylight-saving rules are not applied.
pub(crate) fn posix_tz(s: &str) -> Option<(i64, String)> {
    let b = s.as_bytes();
    let (name, mut i) = if b.first() == Some(&b'<') {
        let end = s.find('>')?;
        (s[1..end].to_string(), end + 1)
    } else {
        let n = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        (s[..n].to_string(), n)
    };
    if name.len() < 3 {
        return None;
    }
    let mut sign = 1;
    match b.get(i) {
        Some(b'+') => i += 1,
        Some(b'-') => {
            sign = -1;
            i += 1;
        }
        _ => {}
    }
    let mut parts = [0i64; 3];
    let mut k = 0;
    let mut digits = 0;
    while i < b.len() && k < 3 {
        match b[i] {
            c @ b'0'..=b'9' => {
                parts[k] = parts[k] * 10 + i64::from(c - b'0');
                digits += 1;
            }
            b':' => k += 1,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    Some((sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]), name))
}

/// The UTC offset (seconds east) and abbreviation in effect at `now` in a TZif file:
/// the type of the last transition at or before `now`, else the first standard-time
/// type (RFC 8536, 3.2). The version 2+ block with 64-bit times is used when present.
pub(crate) fn tzif_zone(d: &[u8], now: i64) -> Option<(i64, String)> {
    let header = |at: usize| -> Option<[usize; 6]> {
        if d.get(at..at + 4)? != b"TZif" {
            return None;
        }
        let mut c = [0usize; 6];
        for (j, v) in c.iter_mut().enumerate() {
            let o = at + 20 + 4 * j;
            *v = u32::from_be_bytes(d.get(o..o + 4)?.try_into().ok()?) as usize;
        }
        Some(c)
    };
    // Counts: isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt.
    let c1 = header(0)?;
    let v1_len = |c: &[usize; 6], tsize: usize| {
        c[3] * tsize + c[3] + c[4] * 6 + c[5] + c[2] * (tsize + 4) + c[1] + c[0]
    };
    let (base, c, tsize) = if d.get(4).copied().unwrap_or(0) >= b'2' {
        let at = 44 + v1_len(&c1, 4);
        (at + 44, header(at)?, 8)
    } else {
        (44, c1, 4)
    };
    let times = base;
    let idx = times + c[3] * tsize;
    let types = idx + c[3];
    let chars = types + c[4] * 6;
    if c[4] == 0 || d.len() < chars + c[5] {
        return None;
    }
    let time_at = |k: usize| -> i64 {
        let o = times + k * tsize;
        if tsize == 8 {
            i64::from_be_bytes(d[o..o + 8].try_into().unwrap_or([0; 8]))
        } else {
            i64::from(i32::from_be_bytes(d[o..o + 4].try_into().unwrap_or([0; 4])))
        }
    };
    let mut ty = None;
    for k in 0..c[3] {
        if time_at(k) <= now {
            ty = Some(d[idx + k] as usize);
        } else {
            break;
        }
    }
    let ty = match ty {
        Some(t) => t,
        None => (0..c[4]).find(|&t| d[types + t * 6 + 4] == 0).unwrap_or(0),
    };
    if ty >= c[4] {
        return None;
    }
    let o = types + ty * 6;
    let off = i64::from(i32::from_be_bytes(d[o..o + 4].try_into().ok()?));
    let ai = d[o + 5] as usize;
    let name_bytes = d.get(chars + ai..chars + c[5])?;
    let end = name_bytes.iter().position(|&b| b == 0)?;
    Some((
        off,
        String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
    ))
}
