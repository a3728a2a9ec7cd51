//! Deterministic tar headers: ustar with numeric ids only, and PAX extended headers for what
//! ustar cannot hold (names over 100 bytes, large ids and sizes, xattrs).

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

/// ustar numeric fields are octal: 7 digits for ids, 11 for sizes.
const MAX_USTAR_ID: u64 = 0o7777777;
const MAX_USTAR_SIZE: u64 = 0o77777777777;

/// One entry to append.
pub(crate) struct TarEntry<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) kind: EntryType,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: u64,
    pub(crate) size: u64,
    pub(crate) link: Option<&'a [u8]>,
    pub(crate) device: Option<(u32, u32)>,
    pub(crate) xattrs: &'a [(std::ffi::OsString, Vec<u8>)],
}

/// Appends `entry` (with its PAX header if needed) and `size` bytes of `data`.
pub(crate) fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &TarEntry<'_>,
    data: impl Read,
) -> io::Result<()> {
    let mut pax = Vec::new();
    let mut header = Header::new_ustar();
    header.set_entry_type(entry.kind);
    set_bytes(&mut header.as_old_mut().name, entry.name, "path", &mut pax);
    if let Some(link) = entry.link {
        set_bytes(
            &mut header.as_old_mut().linkname,
            link,
            "linkpath",
            &mut pax,
        );
    }
    header.set_mode(entry.mode & 0o7777);
    set_number(entry.uid, MAX_USTAR_ID, "uid", &mut pax, |v| {
        header.set_uid(v)
    });
    set_number(entry.gid, MAX_USTAR_ID, "gid", &mut pax, |v| {
        header.set_gid(v)
    });
    set_number(entry.size, MAX_USTAR_SIZE, "size", &mut pax, |v| {
        header.set_size(v)
    });
    header.set_mtime(entry.mtime.min(MAX_USTAR_SIZE));
    if let Some((major, minor)) = entry.device {
        header.set_device_major(major)?;
        header.set_device_minor(minor)?;
    }
    for (name, value) in entry.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name.as_encoded_bytes());
        pax_record(&mut pax, &key, value);
    }
    if !pax.is_empty() {
        let mut ph = Header::new_ustar();
        ph.set_entry_type(EntryType::XHeader);
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(&entry.name[..entry.name.len().min(80)]);
        set_bytes(&mut ph.as_old_mut().name, &pname, "", &mut Vec::new());
        ph.set_mode(0o644);
        ph.set_size(pax.len() as u64);
        ph.set_mtime(0);
        ph.set_cksum();
        builder.append(&ph, pax.as_slice())?;
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// Puts `value` in a fixed header field, or a truncated copy plus a PAX record when too long.
fn set_bytes(field: &mut [u8], value: &[u8], pax_key: &str, pax: &mut Vec<u8>) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    if value.len() > field.len() {
        pax_record(pax, pax_key.as_bytes(), value);
    }
}

fn set_number(value: u64, max: u64, pax_key: &str, pax: &mut Vec<u8>, set: impl FnOnce(u64)) {
    if value > max {
        pax_record(pax, pax_key.as_bytes(), value.to_string().as_bytes());
        set(0);
    } else {
        set(value);
    }
}

/// A PAX record: `<len> <key>=<value>\n`, where `<len>` counts the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [0, 1, 5, 90, 95, 100, 994, 995, 1000] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; n]);
            let s = String::from_utf8(out.clone()).unwrap();
            let len: usize = s.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {n}");
        }
    }
}
