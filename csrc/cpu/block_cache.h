// The CPU ops' large buffers (outputs and temporaries: y, dz, the packed weights, the
// gradients), kept for reuse when freed instead of going back to malloc.
//
// Why: a glibc process hands the freed top of its heap back to the OS (M_TRIM_THRESHOLD)
// and serves large requests with fresh mmaps, so a call's multi-MiB buffers are
// page-faulted in again on every call. Measured on the AMD EPYC KVM guest of
// benchmarks/README.md (~3 us per fault there): T32 B4 H1024 training took 900-2400
// faults per step and 13-17 ms against 12.4-13.0 ms without them. nn.RNN allocates less
// per call (a packed batch's output only), so the cost was fastrnn's own.
//
// The tensors are ordinary CPU tensors (resizable: a resize_ of one allocates through this
// cache at any size; smaller blocks than kMinCachedBytes are freed, not kept). Blocks are
// matched by size (the most recently freed block of the requested size up to 1/8 larger,
// rounded to pages); cached_empty sends requests below kMinCachedBytes to torch's CPU
// allocator. At most limit_bytes are kept (FASTRNN_CPU_CACHE_MB, read at first use,
// default 512; 0 turns the cache off): a freed block makes room by releasing the largest
// free blocks, and one larger than the limit goes back to the system. The cache is never
// destroyed (a tensor may outlive static destructors at exit), and a fork()ed child starts
// with an unlocked cache (pthread_atfork). Unlike torch's allocator it does not report to
// the memory profiler.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fastrnn::cpu {

inline constexpr int64_t kMinCachedBytes = 256 << 10;

// An uninitialised contiguous CPU tensor whose storage comes from the cache.
at::Tensor cached_empty(at::IntArrayRef sizes, at::ScalarType dtype);

struct BlockCacheStats {
  int64_t cached_bytes;  // free blocks held now
  int64_t limit_bytes;
  int64_t hits;          // requests served by a cached block
  int64_t misses;        // requests that allocated
};
BlockCacheStats block_cache_stats();
// Sets the limit (bytes >= 0; blocks beyond it are released now) and returns the old one.
int64_t set_block_cache_limit(int64_t bytes);
// Releases every free block.
void release_cached_blocks();

}  // namespace fastrnn::cpu
