// See block_cache.h. Also the ops that expose it: fastrnn::_cpu_block_cache*.
#include "block_cache.h"

#include <ATen/Context.h>
#include <ATen/EmptyTensor.h>
#include <ATen/native/TensorFactories.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>
#include <torch/library.h>

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

namespace fastrnn::cpu {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kAlignment = 64;  // as torch's CPU allocator

int64_t limit_from_env() {
  const char* env = std::getenv("FASTRNN_CPU_CACHE_MB");
  if (env == nullptr || *env == '\0') return int64_t(512) << 20;
  char* end = nullptr;
  errno = 0;
  const long long mb = std::strtoll(env, &end, 10);
  TORCH_CHECK(end != env && *end == '\0' && errno == 0 && mb >= 0 && mb <= (INT64_MAX >> 20),
              "fastrnn: FASTRNN_CPU_CACHE_MB='", env,
              "' must be a whole number of MiB >= 0 (0 turns the CPU buffer cache off)");
  return int64_t(mb) << 20;
}

class BlockCache final : public c10::Allocator {
 public:
  BlockCache() : limit_(limit_from_env()) {
    // The forking thread holds the lock across fork(), so the child's copy is consistent
    // and unlocked (a tensor the child frees would otherwise wait forever).
    pthread_atfork([] { instance().mu_.lock(); }, [] { instance().mu_.unlock(); },
                   [] { instance().mu_.unlock(); });
  }

  static BlockCache& instance() {
    static BlockCache* cache = new BlockCache();  // never destroyed: see block_cache.h
    return *cache;
  }

  c10::DataPtr allocate(size_t n) override {
    // As torch's CPU allocator: no more than PTRDIFF_MAX (also keeps the rounding below
    // from wrapping around).
    TORCH_CHECK(n <= size_t(PTRDIFF_MAX), "fastrnn: cannot allocate ", n,
                " bytes on the CPU (more than PTRDIFF_MAX)");
    const size_t want = (std::max<size_t>(n, 1) + kPage - 1) / kPage * kPage;
    auto block = std::make_unique<Block>(Block{nullptr, want});
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(want);
      if (it != free_.end() && it->first <= want + want / 8) {
        // The most recently freed block of that size: the likeliest to be in cache.
        it = std::prev(free_.upper_bound(it->first));
        *block = Block{it->second, it->first};
        cached_ -= int64_t(it->first);
        free_.erase(it);
        ++hits_;
      } else {
        ++misses_;
      }
    }
    if (block->ptr == nullptr) {
      TORCH_CHECK(posix_memalign(&block->ptr, kAlignment, want) == 0 && block->ptr != nullptr,
                  "fastrnn: out of CPU memory allocating ", want, " bytes");
    }
    void* p = block->ptr;
    return {p, block.release(), &BlockCache::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }

  BlockCacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {cached_, limit(), hits_, misses_};
  }

  int64_t set_limit(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t old = limit_.exchange(bytes);
    trim_locked(bytes);
    return old;
  }

  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    trim_locked(0);
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };

  // The deleter of every block handed out (noexcept: a deleter must not throw). A block
  // below kMinCachedBytes (a resize_ of a cached tensor) or beyond the limit is freed; to
  // make room for a block within the limit, the largest free blocks go first, so that a
  // cache filled by earlier shapes follows the current ones.
  static void give_back(void* ctx) noexcept {
    std::unique_ptr<Block> block(static_cast<Block*>(ctx));
    BlockCache& cache = instance();
    const int64_t bytes = int64_t(block->bytes);
    bool kept = false;
    {
      std::lock_guard<std::mutex> lock(cache.mu_);
      if (bytes >= kMinCachedBytes && bytes <= cache.limit()) {
        try {
          cache.trim_locked(cache.limit() - bytes);
          cache.free_.emplace(block->bytes, block->ptr);
          cache.cached_ += bytes;
          kept = true;
        } catch (...) {  // no memory for the map's node: free the block instead
        }
      }
    }
    if (!kept) std::free(block->ptr);
  }

  // Frees blocks, largest first, until at most `bytes` are cached.
  void trim_locked(int64_t bytes) {
    while (cached_ > bytes && !free_.empty()) {
      auto it = std::prev(free_.end());
      std::free(it->second);
      cached_ -= int64_t(it->first);
      free_.erase(it);
    }
  }

  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // bytes -> block
  int64_t cached_ = 0, hits_ = 0, misses_ = 0;
  std::atomic<int64_t> limit_;
};

}  // namespace

at::Tensor cached_empty(at::IntArrayRef sizes, at::ScalarType dtype) {
  uint64_t bytes = 0;
  const bool overflows = c10::safe_multiplies_u64(sizes, &bytes) ||
                         __builtin_mul_overflow(bytes, uint64_t(c10::elementSize(dtype)), &bytes);
  BlockCache& cache = BlockCache::instance();
  // (at::empty reports sizes that overflow or are negative.)
  if (overflows || bytes < uint64_t(kMinCachedBytes) || cache.limit() == 0) {
    return at::empty(sizes, at::TensorOptions(dtype));
  }
  at::Tensor t = at::detail::empty_generic(
      sizes, &cache, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype, std::nullopt);
  // As at::empty: NaN (or the type's max) where torch is asked to fill uninitialised memory.
  if (at::globalContext().deterministicAlgorithms() &&
      at::globalContext().deterministicFillUninitializedMemory()) {
    at::native::fill_empty_deterministic_(t);
  }
  return t;
}

BlockCacheStats block_cache_stats() { return BlockCache::instance().stats(); }

int64_t set_block_cache_limit(int64_t bytes) {
  TORCH_CHECK(bytes >= 0, "fastrnn: the CPU buffer cache limit must be >= 0 bytes, got ", bytes);
  return BlockCache::instance().set_limit(bytes);
}

void release_cached_blocks() { BlockCache::instance().release(); }

namespace {

std::tuple<int64_t, int64_t, int64_t, int64_t> cpu_block_cache() {
  const BlockCacheStats s = block_cache_stats();
  return {s.cached_bytes, s.limit_bytes, s.hits, s.misses};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("_cpu_block_cache() -> (int, int, int, int)", &cpu_block_cache);
  m.def("_cpu_block_cache_limit(int bytes) -> int", &set_block_cache_limit);
  m.def("_cpu_block_cache_release() -> ()", &release_cached_blocks);
}

}  // namespace fastrnn::cpu
