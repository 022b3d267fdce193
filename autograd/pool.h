// Per-thread recycling of small memory blocks (internal; used by tensor.cpp and tape.cpp).
//
// Why: every op on small tensors allocates a handful of small objects (tensor header,
// storage, data buffer, tape node) and frees them a moment later. With plain malloc/free
// that bookkeeping, not the arithmetic, was most of an op's cost. Blocks of up to
// kPoolMax bytes are rounded up to a power-of-two size class (64, 128, ..., 4096 bytes,
// 64-byte aligned) and kept on a per-thread free list of that class when freed; the next
// allocation of that class pops one. A block freed on another thread simply joins that
// thread's list. Each list keeps at most 1 MB, so a thread holds at most 7 MB of spare
// blocks. Larger blocks go to one cache shared by all threads (at most 256 MB, reused only for
// a request of the same page-rounded size; see tensor.cpp): glibc would otherwise mmap/munmap
// them every time, and every step of a loop on large tensors paid page faults on fresh
// memory. Under AddressSanitizer pooling is off, so that it still sees every use-after-free.
#pragma once
#include <cstddef>
#include <memory>

namespace ng::detail {

inline constexpr std::size_t kPoolMax = 4096;

// n bytes, 64-byte aligned; nullptr if out of memory. Free with pool_free(p, n), same n.
void* pool_alloc(std::size_t n);
void pool_free(void* p, std::size_t n);

// A standard allocator over the pool, for std::allocate_shared (one pooled block holds the
// object and its reference counts).
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) {}
  T* allocate(std::size_t n) {
    void* p = pool_alloc(n * sizeof(T));
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) { pool_free(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const { return true; }
};

// std::make_shared with the object's block taken from the pool.
template <class T, class... Args>
std::shared_ptr<T> make_pooled(Args&&... args) {
  return std::allocate_shared<T>(PoolAllocator<T>(), std::forward<Args>(args)...);
}

}  // namespace ng::detail
