//! The send-side cache of blob content: fixed-size, chunk-aligned pieces of
//! blobs in memory as [`Bytes`], shared by every stream that sends them.
//!
//! A push sends the same blob to every agent at about the same time. With
//! this cache the blob is read from disk once per chunk instead of once per
//! agent, and every stream hands quinn a refcounted slice of the same
//! allocation instead of a copy (quinn keeps the [`Bytes`] it is given until
//! the peer acknowledges them).
//!
//! Guarantees:
//! - [`ChunkCache::read`] returns exactly the requested bytes of the blob,
//!   from any offset: a slice of a cached chunk, never a copy.
//! - Concurrent misses for the same chunk read the disk once; the readers
//!   all get the same allocation.
//! - The chunks the cache keeps total at most its capacity in bytes; the
//!   least recently used chunk goes first. (Chunks still referenced by
//!   streams stay alive until those streams are done with them.)
//! - Blobs are immutable and content-addressed, and the controller never
//!   deletes one, so a cached chunk never goes stale and nothing needs
//!   invalidating. A failed read is not cached: the next reader tries again.

use super::ContentStore;
use bytes::Bytes;
use flotte_protocol::Sha256Digest;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// The size of a cached chunk, and of the largest single read from disk.
pub const CHUNK_SIZE: u64 = 256 * 1024;

/// The default capacity: enough for a 64 MiB window of content being pushed.
pub const DEFAULT_CAPACITY: u64 = 64 << 20;

/// Identifies a chunk: the blob and the chunk's index within it.
type Key = (Sha256Digest, u64);

/// A chunk, loaded or being loaded by whoever asked first.
type Slot = Arc<OnceCell<Bytes>>;

/// Caches chunks of the blobs in a [`ContentStore`]. See the module docs.
pub struct ChunkCache {
    store: ContentStore,
    capacity: u64,
    lru: Mutex<Lru>,
    disk_reads: AtomicU64,
}

impl ChunkCache {
    /// A cache over `store` keeping at most `capacity` bytes of chunks.
    pub fn new(store: ContentStore, capacity: u64) -> Self {
        ChunkCache { store, capacity, lru: Mutex::new(Lru::default()), disk_reads: AtomicU64::new(0) }
    }

    /// The bytes of blob `digest`, whose size is `blob_size`, from `offset`
    /// up to the end of the chunk that holds `offset`, and at most
    /// `max_len` of them. Empty only if `offset` is at or past the end of
    /// the blob or `max_len` is 0.
    pub async fn read(
        &self,
        digest: &Sha256Digest,
        blob_size: u64,
        offset: u64,
        max_len: u64,
    ) -> std::io::Result<Bytes> {
        if offset >= blob_size || max_len == 0 {
            return Ok(Bytes::new());
        }
        let index = offset / CHUNK_SIZE;
        let chunk = self.chunk(digest, blob_size, index).await?;
        let start = usize::try_from(offset - index * CHUNK_SIZE).unwrap_or(usize::MAX).min(chunk.len());
        let end = usize::try_from(max_len).unwrap_or(usize::MAX).saturating_add(start).min(chunk.len());
        Ok(chunk.slice(start..end))
    }

    /// The bytes the cache keeps (loaded chunks and chunks being loaded).
    pub fn cached_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// How many chunks were read from disk since the cache was created.
    pub fn disk_reads(&self) -> u64 {
        self.disk_reads.load(Ordering::Relaxed)
    }

    async fn chunk(&self, digest: &Sha256Digest, blob_size: u64, index: u64) -> std::io::Result<Bytes> {
        let key = (*digest, index);
        let offset = index * CHUNK_SIZE;
        let len = CHUNK_SIZE.min(blob_size - offset);
        let slot = self.lock().get_or_insert(key, len, self.capacity);
        let loaded = slot
            .get_or_try_init(|| async {
                self.disk_reads.fetch_add(1, Ordering::Relaxed);
                let path = self.store.path(digest);
                tokio::task::spawn_blocking(move || read_at(&path, offset, len)).await.map_err(std::io::Error::other)?
            })
            .await;
        match loaded {
            Ok(bytes) => Ok(bytes.clone()),
            Err(e) => {
                self.lock().remove_if_same(&key, &slot);
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // The map stays consistent even if a holder panicked: every update
        // completes before the guard is dropped.
        self.lru.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads `len` bytes at `offset` of the file at `path` in one read.
fn read_at(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// The cached chunks in least-recently-used order.
#[derive(Default)]
struct Lru {
    entries: HashMap<Key, Entry>,
    /// Last use → key; the first entry is the least recently used.
    by_use: BTreeMap<u64, Key>,
    clock: u64,
    bytes: u64,
}

struct Entry {
    slot: Slot,
    len: u64,
    last_use: u64,
}

impl Lru {
    /// The slot for `key`, marked as just used; a new empty one (counted
    /// as `len` bytes) if the chunk is not cached. Evicts the least
    /// recently used chunks beyond `capacity`.
    fn get_or_insert(&mut self, key: Key, len: u64, capacity: u64) -> Slot {
        self.clock += 1;
        let now = self.clock;
        if let Some(entry) = self.entries.get_mut(&key) {
            self.by_use.remove(&entry.last_use);
            entry.last_use = now;
            self.by_use.insert(now, key);
            return entry.slot.clone();
        }
        let slot = Slot::default();
        self.entries.insert(key, Entry { slot: slot.clone(), len, last_use: now });
        self.by_use.insert(now, key);
        self.bytes += len;
        while self.bytes > capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.len;
            }
        }
        slot
    }

    /// Forgets `key` if it still maps to `slot` (a failed load).
    fn remove_if_same(&mut self, key: &Key, slot: &Slot) {
        if self.entries.get(key).is_some_and(|entry| Arc::ptr_eq(&entry.slot, slot)) {
            if let Some(entry) = self.entries.remove(key) {
                self.by_use.remove(&entry.last_use);
                self.bytes -= entry.len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A store holding one blob of `len` bytes, every byte distinct enough
    /// that a misplaced slice shows.
    fn store_with_blob(len: u64) -> (tempfile::TempDir, ContentStore, Sha256Digest, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let digest = Sha256Digest::of(&bytes);
        std::fs::write(store.path(&digest), &bytes).unwrap();
        (dir, store, digest, bytes)
    }

    /// Everything from `offset` to the end, read the way a content stream does.
    async fn read_to_end(cache: &ChunkCache, digest: &Sha256Digest, size: u64, offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = offset;
        while at < size {
            let piece = cache.read(digest, size, at, u64::MAX).await.unwrap();
            assert!(!piece.is_empty());
            at += piece.len() as u64;
            out.extend_from_slice(&piece);
        }
        out
    }

    #[tokio::test]
    async fn hits_share_the_allocation_of_the_first_read() {
        let (_dir, store, digest, _) = store_with_blob(3 * CHUNK_SIZE);
        let cache = ChunkCache::new(store, DEFAULT_CAPACITY);
        let first = cache.read(&digest, 3 * CHUNK_SIZE, CHUNK_SIZE, u64::MAX).await.unwrap();
        let second = cache.read(&digest, 3 * CHUNK_SIZE, CHUNK_SIZE, u64::MAX).await.unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(cache.disk_reads(), 1);
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_chunk_read_the_disk_once() {
        let (_dir, store, digest, _) = store_with_blob(CHUNK_SIZE);
        let cache = Arc::new(ChunkCache::new(store, DEFAULT_CAPACITY));
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.read(&digest, CHUNK_SIZE, 0, u64::MAX).await.unwrap() })
            })
            .collect();
        let mut pointers = Vec::new();
        for reader in readers {
            pointers.push(reader.await.unwrap().as_ptr());
        }
        assert!(pointers.windows(2).all(|w| w[0] == w[1]), "all readers share one allocation");
        assert_eq!(cache.disk_reads(), 1);
    }

    #[tokio::test]
    async fn the_cache_keeps_at_most_its_capacity_evicting_the_least_recently_used() {
        let size = 4 * CHUNK_SIZE;
        let (_dir, store, digest, _) = store_with_blob(size);
        let cache = ChunkCache::new(store, 2 * CHUNK_SIZE);
        let chunk0 = cache.read(&digest, size, 0, u64::MAX).await.unwrap();
        let chunk1 = cache.read(&digest, size, CHUNK_SIZE, u64::MAX).await.unwrap();
        // Chunk 0 is used again, so chunk 1 is now the least recently used.
        cache.read(&digest, size, 0, u64::MAX).await.unwrap();
        cache.read(&digest, size, 2 * CHUNK_SIZE, u64::MAX).await.unwrap();
        assert_eq!(cache.cached_bytes(), 2 * CHUNK_SIZE);
        assert_eq!(cache.disk_reads(), 3);

        let again0 = cache.read(&digest, size, 0, u64::MAX).await.unwrap();
        assert_eq!(again0.as_ptr(), chunk0.as_ptr(), "chunk 0 stayed");
        let again1 = cache.read(&digest, size, CHUNK_SIZE, u64::MAX).await.unwrap();
        assert_eq!(cache.disk_reads(), 4, "chunk 1 was evicted and read again");
        assert_eq!(again1, chunk1);
        assert!(cache.cached_bytes() <= 2 * CHUNK_SIZE);
    }

    #[tokio::test]
    async fn a_cache_smaller_than_a_chunk_still_serves_it() {
        let (_dir, store, digest, bytes) = store_with_blob(CHUNK_SIZE + 10);
        let cache = ChunkCache::new(store, 0);
        assert_eq!(read_to_end(&cache, &digest, CHUNK_SIZE + 10, 0).await, bytes);
        assert_eq!(cache.cached_bytes(), 0);
    }

    #[tokio::test]
    async fn an_unaligned_offset_is_a_slice_of_the_cached_chunk_with_exactly_the_requested_bytes() {
        let size = 3 * CHUNK_SIZE;
        let (_dir, store, digest, bytes) = store_with_blob(size);
        let cache = ChunkCache::new(store, DEFAULT_CAPACITY);
        let chunk1 = cache.read(&digest, size, CHUNK_SIZE, u64::MAX).await.unwrap();

        // A download resumed in the middle of chunk 1.
        let resumed_at = CHUNK_SIZE + 12_345;
        let piece = cache.read(&digest, size, resumed_at, u64::MAX).await.unwrap();
        assert_eq!(piece.as_ptr(), chunk1[12_345..].as_ptr(), "a slice, not a copy");
        assert_eq!(piece.len() as u64, 2 * CHUNK_SIZE - resumed_at, "up to the end of the chunk");
        assert_eq!(&piece[..], &bytes[resumed_at as usize..2 * CHUNK_SIZE as usize]);

        let bounded = cache.read(&digest, size, resumed_at, 100).await.unwrap();
        assert_eq!(&bounded[..], &bytes[resumed_at as usize..resumed_at as usize + 100]);
        assert_eq!(read_to_end(&cache, &digest, size, resumed_at).await, bytes[resumed_at as usize..]);
        assert_eq!(cache.disk_reads(), 2, "chunks 1 and 2");
    }

    #[tokio::test]
    async fn the_last_partial_chunk_holds_exactly_the_rest_of_the_blob() {
        let size = 2 * CHUNK_SIZE + 777;
        let (_dir, store, digest, bytes) = store_with_blob(size);
        let cache = ChunkCache::new(store, DEFAULT_CAPACITY);
        let last = cache.read(&digest, size, 2 * CHUNK_SIZE, u64::MAX).await.unwrap();
        assert_eq!(&last[..], &bytes[2 * CHUNK_SIZE as usize..]);
        assert_eq!(read_to_end(&cache, &digest, size, 0).await, bytes);
        assert!(cache.read(&digest, size, size, u64::MAX).await.unwrap().is_empty(), "nothing past the end");
        assert_eq!(cache.cached_bytes(), size);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path());
        let bytes = vec![7u8; 1000];
        let digest = Sha256Digest::of(&bytes);
        let cache = ChunkCache::new(store.clone(), MIB);
        assert!(cache.read(&digest, 1000, 0, u64::MAX).await.is_err(), "the blob is not there yet");
        assert_eq!(cache.cached_bytes(), 0);

        std::fs::write(store.path(&digest), &bytes).unwrap();
        assert_eq!(&cache.read(&digest, 1000, 0, u64::MAX).await.unwrap()[..], &bytes[..]);
    }
}
