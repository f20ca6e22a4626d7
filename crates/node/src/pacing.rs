//! Pacing socket bytes to the configured bandwidth caps.
//!
//! Each direction has one token bucket shared by every connection of the node. Its rate
//! is the lowest of the cap schedules (the node's own cap and its share of the site's
//! WAN cap), read again every second. Its depth is 4% of one second's allowance, so a
//! 1-second window carries at most 1.04 times the cap. The wrapper
//! sits directly on the TCP stream, below noise and yamux, so the cap includes their
//! framing and every protocol message.
//!
//! [`Pacer::set_schedules`] swaps the schedules of a live bucket, which every connection
//! shares, so a reload changes the cap of connections already open without closing them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite};
use patchmesh_core::Timestamp;
use patchmesh_core::caps::CapSchedule;

/// The bucket depth as a share of one second's allowance.
const BURST_SHARE: f64 = 0.04;
/// The smallest grant worth a write, in bytes, unless the bucket is smaller.
const MIN_GRANT: f64 = 512.0;
/// How often the rate is read again from the schedules.
const RATE_REFRESH: Duration = Duration::from_secs(1);

/// A token bucket for one direction.
#[derive(Debug)]
pub(crate) struct Pacer {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// The caps; the lowest applies at each instant, none means uncapped.
    schedules: Vec<CapSchedule>,
    /// Bytes that may pass now.
    tokens: f64,
    /// Bytes per second, or `None` when uncapped.
    rate: Option<f64>,
    refilled: Instant,
    rate_read: Option<Instant>,
}

impl Pacer {
    /// Creates a pacer whose rate is the lowest of `schedules` at each instant, and
    /// uncapped when every schedule is.
    pub(crate) fn new(schedules: Vec<CapSchedule>) -> Arc<Pacer> {
        let bucket = Bucket { schedules, tokens: 0.0, rate: None, refilled: Instant::now(), rate_read: None };
        Arc::new(Pacer { state: Mutex::new(bucket) })
    }

    /// Replaces the schedules; the next grant uses the new rate. Tokens saved under the
    /// old rate are cut to the new bucket depth, so a lowered cap applies from the first
    /// window rather than after the old burst drains.
    pub(crate) fn set_schedules(&self, schedules: Vec<CapSchedule>) {
        let mut bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.schedules = schedules;
        bucket.rate_read = None;
        let wall = Timestamp::now_system();
        let rate = bucket.schedules.iter().filter_map(|schedule| schedule.rate_at(wall)).reduce(f64::min);
        if let Some(rate) = rate {
            bucket.tokens = bucket.tokens.min(rate * BURST_SHARE);
        }
    }

    /// Returns the rate in force now, in bytes per second, or `None` when uncapped.
    pub(crate) fn current_rate(&self) -> Option<f64> {
        let bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.schedules.iter().filter_map(|schedule| schedule.rate_at(Timestamp::now_system())).reduce(f64::min)
    }

    /// Grants up to `want` bytes now, or returns how long to wait for some.
    fn take(&self, want: usize) -> Result<usize, Duration> {
        let now = Instant::now();
        let mut bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if bucket.rate_read.is_none_or(|read| now.duration_since(read) >= RATE_REFRESH) {
            let wall = Timestamp::now_system();
            bucket.rate = bucket.schedules.iter().filter_map(|schedule| schedule.rate_at(wall)).reduce(f64::min);
            bucket.rate_read = Some(now);
        }
        let Some(rate) = bucket.rate else {
            return Ok(want);
        };
        let depth = rate * BURST_SHARE;
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(depth);
        bucket.refilled = now;
        let floor = MIN_GRANT.min(depth);
        if bucket.tokens >= floor || bucket.tokens >= want as f64 {
            let grant = (bucket.tokens as usize).min(want).max(1);
            bucket.tokens -= grant as f64;
            return Ok(grant);
        }
        let missing = floor.min(want as f64) - bucket.tokens;
        Err(Duration::from_secs_f64(missing / rate).max(Duration::from_micros(100)))
    }

    /// Returns `bytes` granted but not used.
    fn refund(&self, bytes: usize) {
        if bytes > 0 {
            let mut bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            bucket.tokens += bytes as f64;
        }
    }
}

/// A stream whose reads and writes are paced.
pub(crate) struct Paced<S> {
    inner: S,
    upload: Arc<Pacer>,
    download: Arc<Pacer>,
    write_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    read_wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Paced<S> {
    pub(crate) fn new(inner: S, upload: Arc<Pacer>, download: Arc<Pacer>) -> Self {
        Paced { inner, upload, download, write_wait: None, read_wait: None }
    }
}

/// Waits out `wait` if set; `Pending` until it has passed.
fn poll_wait(wait: &mut Option<Pin<Box<tokio::time::Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    if let Some(sleep) = wait.as_mut() {
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        *wait = None;
    }
    Poll::Ready(())
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            if poll_wait(&mut this.write_wait, cx).is_pending() {
                return Poll::Pending;
            }
            match this.upload.take(buf.len()) {
                Ok(grant) => {
                    let result = Pin::new(&mut this.inner).poll_write(cx, &buf[..grant]);
                    let used = match &result {
                        Poll::Ready(Ok(written)) => *written,
                        _ => 0,
                    };
                    this.upload.refund(grant - used);
                    return result;
                }
                Err(wait) => this.write_wait = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            if poll_wait(&mut this.read_wait, cx).is_pending() {
                return Poll::Pending;
            }
            match this.download.take(buf.len()) {
                Ok(grant) => {
                    let result = Pin::new(&mut this.inner).poll_read(cx, &mut buf[..grant]);
                    let used = match &result {
                        Poll::Ready(Ok(read)) => *read,
                        _ => 0,
                    };
                    this.download.refund(grant - used);
                    return result;
                }
                Err(wait) => this.read_wait = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use libp2p::tcp::tokio::TcpStream;

    /// Accepts one connection on a loopback listener and records `(seconds since
    /// accept, total bytes)` at every read until the writer closes.
    async fn spawn_reader() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<(f64, u64)>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let reader = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut socket = TcpStream(socket);
            let start = Instant::now();
            let mut samples = vec![(0.0f64, 0u64)];
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let read = socket.read(&mut buf).await.expect("read");
                if read == 0 {
                    break;
                }
                total += read as u64;
                samples.push((start.elapsed().as_secs_f64(), total));
            }
            samples
        });
        (address, reader)
    }

    /// Returns the maximum bytes any 1-second window starting at or after `from` carried.
    fn worst_window(samples: &[(f64, u64)], from: f64) -> f64 {
        let mut worst = 0.0f64;
        for (index, &(start, before)) in samples.iter().enumerate().filter(|(_, sample)| sample.0 >= from) {
            let within = samples[index..].iter().take_while(|(time, _)| *time <= start + 1.0).last();
            if let Some(&(_, after)) = within {
                worst = worst.max((after - before) as f64);
            }
        }
        worst
    }

    /// Writes as fast as `paced` allows until `deadline`.
    async fn write_until(paced: &mut Paced<TcpStream>, deadline: Instant) {
        let chunk = vec![7u8; 256 * 1024];
        while Instant::now() < deadline {
            paced.write_all(&chunk).await.expect("write");
        }
    }

    /// Writes as fast as the pacer allows over a real loopback socket for 3 s and
    /// checks every 1-second window of received bytes, sampled at every read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_cap_holds_every_window() {
        const RATE: f64 = 2_000_000.0;
        let (address, reader) = spawn_reader().await;
        let socket = tokio::net::TcpStream::connect(address).await.expect("connect");
        let upload = Pacer::new(vec![CapSchedule::constant(RATE)]);
        let download = Pacer::new(Vec::new());
        let mut paced = Paced::new(TcpStream(socket), upload, download);
        write_until(&mut paced, Instant::now() + Duration::from_secs(3)).await;
        paced.close().await.expect("close");
        let samples = reader.await.expect("reader");
        let worst = worst_window(&samples, 0.0);
        assert!(worst <= RATE * 1.05, "a 1-second window carried {worst} bytes, cap {RATE}");
        let total = samples.last().map_or(0, |sample| sample.1) as f64;
        assert!(total >= RATE * 2.5, "only {total} bytes in 3 s: the pacer is far below its cap");
    }

    /// Lowers the cap of a connection that is already sending, as a reload does, and
    /// checks that every 1-second window from 0.2 s after the change stays within the new cap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lowered_cap_applies_to_open_connection() {
        const BEFORE: f64 = 2_000_000.0;
        const AFTER: f64 = 400_000.0;
        let (address, reader) = spawn_reader().await;
        let socket = tokio::net::TcpStream::connect(address).await.expect("connect");
        let upload = Pacer::new(vec![CapSchedule::constant(BEFORE)]);
        let mut paced = Paced::new(TcpStream(socket), upload.clone(), Pacer::new(Vec::new()));
        let start = Instant::now();
        write_until(&mut paced, start + Duration::from_millis(1500)).await;
        let changed = start.elapsed().as_secs_f64();
        upload.set_schedules(vec![CapSchedule::constant(AFTER)]);
        write_until(&mut paced, start + Duration::from_millis(4000)).await;
        paced.close().await.expect("close");
        let samples = reader.await.expect("reader");
        let before = samples.iter().take_while(|(time, _)| *time <= 1.0).last().map_or(0, |sample| sample.1) as f64;
        assert!(before >= AFTER * 3.0, "only {before} bytes in the first second under a {BEFORE} B/s cap");
        let worst = worst_window(&samples, changed + 0.2);
        assert!(worst <= AFTER * 1.05, "a 1-second window after the change carried {worst} bytes, new cap {AFTER}");
    }

    #[test]
    fn raised_cap_reported() {
        let pacer = Pacer::new(vec![CapSchedule::constant(1000.0)]);
        pacer.set_schedules(vec![CapSchedule::constant(5000.0)]);
        assert_eq!(pacer.current_rate(), Some(5000.0));
    }

    #[test]
    fn removed_cap_uncaps() {
        let pacer = Pacer::new(vec![CapSchedule::constant(1000.0)]);
        pacer.set_schedules(Vec::new());
        assert_eq!(pacer.take(1 << 20), Ok(1 << 20));
    }
}
