//! A large synthetic tree for benchmarks: `files` files in directories of 100, `total` bytes
//! in all, half compressible text and half incompressible bytes, like a typical image layer
//! (sources and configs next to binaries and compressed assets). Deterministic.

use std::fs;
use std::io::Write;
use std::path::Path;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: &[&str] = &[
    "container",
    "layer",
    "snapshot",
    "overlay",
    "digest",
    "manifest",
    "config",
    "builder",
    "import",
    "export",
    "function",
    "return",
    "struct",
    "value",
    "error",
    "result",
    "static",
    "const",
    "module",
    "package",
];

pub fn build_big_tree(root: &Path, total: u64, files: u64) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let avg = total / files;
    let mut buf = Vec::with_capacity(avg as usize * 2);
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        // Sizes between avg/2 and 3*avg/2 keep the total close to `total`.
        let size = avg / 2 + rng.next() % avg.max(1);
        buf.clear();
        if i % 2 == 0 {
            while (buf.len() as u64) < size {
                let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                write!(buf, "{w} {} ", rng.next() % 1000).unwrap();
                if rng.next().is_multiple_of(8) {
                    buf.push(b'\n');
                }
            }
            buf.truncate(size as usize);
        } else {
            while (buf.len() as u64) < size {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
            buf.truncate(size as usize);
        }
        fs::write(dir.join(format!("f{i:05}")), &buf).unwrap();
    }
}
