//! Parallel gzip: one gzip member whose deflate stream is cut into independently compressed
//! 128 KiB chunks, as pigz writes it, so every gzip reader accepts it and the bytes do not
//! depend on the number of threads.
//!
//! Each chunk is compressed on a worker thread with the previous chunk's last 32 KiB as its
//! dictionary and ends with a sync flush (an empty stored block), so the chunks' outputs
//! concatenate into one stream; a writer thread puts them in order, combines their CRCs and
//! writes the blob. The stream ends with an empty final block and the gzip trailer.
//!
//! Data that does not compress is not worth compressing hard: a chunk whose byte histogram
//! is close to uniform (already compressed files, random data) goes through a fast greedy
//! compressor, which still squeezes the runs of zeros in tar headers between such files, and
//! any chunk that would grow is written as stored blocks. zlib at level 6 spends as long on
//! random data as on text (the measurements are in BENCHMARKS.md); the fast path is several
//! times quicker and loses nothing on such data. The decision depends on the chunk's bytes
//! alone, so the output stays deterministic.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress};
use miniz_oxide::deflate::core::{
    compress as miniz_compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
    TDEFLStatus,
};

/// Uncompressed bytes per chunk: pigz's block size, large enough that the 5-byte sync marker
/// and the lost matches across chunk borders cost well under 0.1 %.
pub(crate) const CHUNK: usize = 128 << 10;
/// The deflate window: how much of the previous chunk is the next one's dictionary.
const WINDOW: usize = 32 << 10;
/// Largest stored block payload.
const STORED_MAX: usize = 65_535;
/// A chunk goes the fast path when its order-2 (collision) entropy is at least this many
/// bits per byte. Text, source and machine code stay well below 7; compressed and random
/// data sit near 8, and tar headers between random files bring a chunk down to about 7.4.
const FAST_PATH_BITS: u32 = 7;

/// gzip header: deflate, no name, no time (reproducible), no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final block with fixed codes: ends the deflate stream after the last sync flush.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One chunk to compress.
struct Job {
    index: u64,
    data: Arc<Vec<u8>>,
    /// The chunk before it, whose tail is the dictionary.
    prev: Option<Arc<Vec<u8>>>,
}

/// One compressed chunk.
struct Done {
    index: u64,
    bytes: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// A gzip writer compressing on `threads` worker threads into `out`.
pub(crate) struct ParallelGzip<W: Write + Send + 'static> {
    buf: Vec<u8>,
    prev: Option<Arc<Vec<u8>>>,
    next_index: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<Tail<W>>>>,
}

/// What the writer thread hands back: the output and the checksum of everything.
struct Tail<W> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    /// Starts the threads; `level` 0 stores everything, 1–9 as zlib's levels.
    pub(crate) fn new(out: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let level = level.min(9);
        // Enough queued chunks to keep every worker busy while the producer reads files.
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("img-gzip-{n}"))
                    .spawn(move || work(&job_rx, &done_tx, level))?,
            );
        }
        drop(done_tx);
        let writer = std::thread::Builder::new()
            .name("img-gzip-writer".into())
            .spawn(move || write_in_order(out, &done_rx))?;
        Ok(ParallelGzip {
            buf: Vec::with_capacity(CHUNK),
            prev: None,
            next_index: 0,
            jobs: Some(jobs),
            workers,
            writer: Some(writer),
        })
    }

    /// Sends the filled chunk to the workers.
    fn dispatch(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Arc::new(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.push_chunk(data)
    }

    /// Compresses `data` as the next chunk, without copying it. Every chunk but the last
    /// must be [`CHUNK`] bytes long, so the output does not depend on how the input was cut.
    pub(crate) fn push_chunk(&mut self, data: Arc<Vec<u8>>) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.prev.as_ref().is_some_and(|p| p.len() != CHUNK) {
            return Err(io::Error::other("only the last gzip chunk may be short"));
        }
        let job = Job {
            index: self.next_index,
            data: Arc::clone(&data),
            prev: self.prev.replace(data),
        };
        self.next_index += 1;
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            // Every worker is gone: the writer failed; its error is the one to report.
            _ => Err(self.writer_error()),
        }
    }

    /// Stops the threads after a failure and returns the writer's error.
    fn writer_error(&mut self) -> io::Error {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("the gzip writer thread panicked"),
            _ => io::Error::other("the gzip compression threads stopped"),
        }
    }

    /// Compresses what is left, ends the stream and returns the output.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch()?;
        self.jobs = None;
        let mut panicked = false;
        for worker in self.workers.drain(..) {
            panicked |= worker.join().is_err();
        }
        let tail = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result?,
            _ => return Err(io::Error::other("the gzip writer thread panicked")),
        };
        if panicked {
            return Err(io::Error::other("a gzip compression thread panicked"));
        }
        let Tail { mut out, crc } = tail;
        let mut trailer = Vec::with_capacity(10);
        trailer.extend_from_slice(&FINAL_BLOCK);
        let len = crc.total_len();
        trailer.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE: the length modulo 2^32, as RFC 1952 defines it.
        trailer.extend_from_slice(&(len as u32).to_le_bytes());
        out.write_all(&trailer)?;
        Ok(out)
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let room = CHUNK - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.dispatch()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are cut at fixed offsets so the output does not depend on write sizes; a
        // flush does not cut one early.
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzip<W> {
    fn drop(&mut self) {
        // Abandoned (an error upstream): let the threads drain and end; the output is
        // dropped unfinished.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A worker: compresses jobs until the queue closes or the writer is gone.
fn work(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, level: u32) {
    let mut chunker = ChunkCompressor::new(level);
    loop {
        // The lock is held only while taking one job.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let bytes = chunker.compress(&job.data, job.prev.as_deref().map(Vec::as_slice));
        let mut crc = crc32fast::Hasher::new();
        crc.update(&job.data);
        if done
            .send(Done {
                index: job.index,
                bytes,
                crc,
            })
            .is_err()
        {
            return;
        }
    }
}

/// The writer: the header, then the chunks in order; returns the output and the CRC.
fn write_in_order<W: Write>(mut out: W, done: &Receiver<Done>) -> io::Result<Tail<W>> {
    out.write_all(&HEADER)?;
    let mut crc = crc32fast::Hasher::new();
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for chunk in done {
        pending.insert(chunk.index, chunk);
        while let Some(chunk) = pending.remove(&next) {
            out.write_all(&chunk.bytes)?;
            crc.combine(&chunk.crc);
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a gzip chunk was lost"));
    }
    Ok(Tail { out, crc })
}

/// Compresses chunks into byte-aligned pieces of one deflate stream.
struct ChunkCompressor {
    level: u32,
    /// The configured level, with the previous chunk's tail as dictionary.
    full: Compress,
    /// Level 1 greedy matching, for chunks that look incompressible.
    fast: Box<CompressorOxide>,
}

impl ChunkCompressor {
    fn new(level: u32) -> Self {
        ChunkCompressor {
            level,
            full: Compress::new(flate2::Compression::new(level), false),
            // Negative window bits: a raw deflate stream, no zlib header.
            fast: Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
                1, -15, 0,
            ))),
        }
    }

    fn compress(&mut self, data: &[u8], prev: Option<&[u8]>) -> Vec<u8> {
        let compressed = if self.level == 0 {
            None
        } else if looks_incompressible(data) {
            self.fast(data)
        } else {
            self.full(data, prev)
        };
        match compressed {
            Some(bytes) if bytes.len() < stored_len(data.len()) => bytes,
            _ => stored(data),
        }
    }

    fn full(&mut self, data: &[u8], prev: Option<&[u8]>) -> Option<Vec<u8>> {
        let c = &mut self.full;
        c.reset();
        if let Some(prev) = prev {
            c.set_dictionary(&prev[prev.len().saturating_sub(WINDOW)..])
                .ok()?;
        }
        let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 64);
        loop {
            let consumed = c.total_in() as usize;
            c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
                .ok()?;
            // With a sync flush, room left in the output means the flush completed.
            if c.total_in() as usize == data.len() && out.len() < out.capacity() {
                return Some(out);
            }
            out.reserve(out.capacity() / 2 + 64);
        }
    }

    fn fast(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let c = &mut self.fast;
        c.reset();
        let mut out = vec![0u8; data.len() + data.len() / 4 + 1024];
        let (mut read, mut written) = (0, 0);
        loop {
            let (status, r, w) =
                miniz_compress(c, &data[read..], &mut out[written..], TDEFLFlush::Sync);
            read += r;
            written += w;
            match status {
                TDEFLStatus::Okay if read == data.len() && written < out.len() => break,
                TDEFLStatus::Okay => out.resize(out.len() * 2, 0),
                _ => return None,
            }
        }
        out.truncate(written);
        Some(out)
    }
}

/// Whether `data`'s collision entropy (`-log2 Σ p²`) is at least [`FAST_PATH_BITS`]. In
/// integers, so the decision is the same on every machine: `Σ c² · 2^bits ≤ n²`.
fn looks_incompressible(data: &[u8]) -> bool {
    // Four histograms, merged at the end, so consecutive equal bytes do not stall on one
    // counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let sum_sq: u128 = (0..256)
        .map(|i| {
            let c = u128::from(counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i]);
            c * c
        })
        .sum();
    let n = data.len() as u128;
    sum_sq << FAST_PATH_BITS <= n * n
}

/// The size of `len` bytes as stored blocks.
fn stored_len(len: usize) -> usize {
    len + 5 * len.div_ceil(STORED_MAX).max(1)
}

/// `data` as non-final stored blocks (the stream is byte-aligned before each chunk).
fn stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(data.len()));
    for block in data.chunks(STORED_MAX) {
        let len = block.len() as u16;
        // BFINAL 0, BTYPE 00, then padding to the byte boundary: one zero byte.
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gzip(data: &[u8], level: u32, threads: usize, write_size: usize) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), level, threads).unwrap();
        for piece in data.chunks(write_size.max(1)) {
            gz.write_all(piece).unwrap();
        }
        gz.finish().unwrap()
    }

    fn gunzip(blob: &[u8]) -> Vec<u8> {
        // The single-member decoder: the stream must be one gzip member.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// A xorshift stream: incompressible bytes without a dependency.
    fn random(n: usize, mut seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.extend_from_slice(&seed.to_le_bytes());
        }
        v.truncate(n);
        v
    }

    fn text(n: usize) -> Vec<u8> {
        let words = [
            "layer", "snapshot", "the", "of", "image", "build", "cache", "a",
        ];
        let mut v = Vec::new();
        let mut i = 0usize;
        while v.len() < n {
            v.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
            v.push(if i.is_multiple_of(11) { b'\n' } else { b' ' });
            i += 1;
        }
        v.truncate(n);
        v
    }

    #[test]
    fn round_trips_through_a_single_member_decoder() {
        let mut mixed = text(300_000);
        mixed.extend(random(400_000, 7));
        mixed.extend(vec![0u8; 200_000]);
        for data in [Vec::new(), b"x".to_vec(), text(CHUNK), mixed] {
            for level in [0, 1, 6, 9] {
                assert_eq!(
                    gunzip(&gzip(&data, level, 3, 10_000)),
                    data,
                    "level {level}"
                );
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_threads_or_write_sizes() {
        let mut data = text(500_000);
        data.extend(random(300_000, 3));
        let one = gzip(&data, 6, 1, 1 << 20);
        assert_eq!(gzip(&data, 6, 4, 777), one);
        assert_eq!(gzip(&data, 6, 2, 4096), one);
    }

    #[test]
    fn incompressible_data_is_stored_and_text_is_compressed() {
        let noise = random(4 * CHUNK, 11);
        let blob = gzip(&noise, 6, 2, 1 << 16);
        // Header, trailer, final block and 5 bytes per stored block: nothing more.
        let overhead = blob.len() - noise.len();
        assert!(
            overhead <= 20 + 5 * (noise.len() / STORED_MAX + 4),
            "{overhead}"
        );
        let words = text(4 * CHUNK);
        assert!(gzip(&words, 6, 2, 1 << 16).len() < words.len() / 4);
    }

    #[test]
    fn the_entropy_gate_separates_text_from_noise_and_keeps_tar_headers_fast() {
        assert!(looks_incompressible(&random(CHUNK, 5)));
        assert!(!looks_incompressible(&text(CHUNK)));
        assert!(!looks_incompressible(&vec![0u8; CHUNK]));
        // 10 KB random files with their 512-byte tar headers: still the fast path, which
        // keeps the headers' zeros compressed.
        let mut tar_like = Vec::new();
        let mut seed = 1;
        while tar_like.len() < CHUNK {
            tar_like.extend(vec![0u8; 512]);
            tar_like.extend(random(10_240, seed));
            seed += 1;
        }
        tar_like.truncate(CHUNK);
        assert!(looks_incompressible(&tar_like));
        let mut c = ChunkCompressor::new(6);
        assert!(c.compress(&tar_like, None).len() < CHUNK * 97 / 100);
    }
}
