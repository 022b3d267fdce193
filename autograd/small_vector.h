// SmallVector<T, N>: a vector that keeps up to N elements inside the object and moves them
// to the heap only beyond that.
//
// Why: shapes, strides and a node's edges are short lists made for every tensor and every
// recorded op. As std::vectors each one cost a malloc and a free, which dominated the cost
// of an op on small tensors. Kept deliberately simple: the elements live in `small_` while
// size() <= N and in `large_` otherwise (never in both), so the defaulted copy and move
// are correct. The interface is the part of std::vector that normgrad uses.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <vector>

namespace ng {

template <class T, std::size_t N>
class SmallVector {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using iterator = T*;
  using const_iterator = const T*;

  SmallVector() = default;
  explicit SmallVector(std::size_t n, const T& v = T()) { resize(n, v); }
  SmallVector(std::initializer_list<T> il) : SmallVector(il.begin(), il.end()) {}
  template <std::input_iterator It>
  SmallVector(It b, It e) {
    for (; b != e; ++b) push_back(*b);
  }

  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  T* data() { return on_heap() ? large_.data() : small_.data(); }
  const T* data() const { return on_heap() ? large_.data() : small_.data(); }
  T* begin() { return data(); }
  T* end() { return data() + n_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + n_; }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  T& front() { return data()[0]; }
  const T& front() const { return data()[0]; }
  T& back() { return data()[n_ - 1]; }
  const T& back() const { return data()[n_ - 1]; }

  void push_back(T v) {
    if (n_ < N) {
      small_[n_] = std::move(v);
    } else {
      if (n_ == N) to_heap();
      large_.push_back(std::move(v));
    }
    ++n_;
  }
  template <class... Args>
  T& emplace_back(Args&&... args) {
    push_back(T(std::forward<Args>(args)...));
    return back();
  }
  void pop_back() {
    if (n_ > N) {
      large_.pop_back();
      if (n_ == N + 1) to_inline();
    } else {
      small_[n_ - 1] = T();  // release what the slot held
    }
    --n_;
  }
  void resize(std::size_t n, const T& v = T()) {
    while (n_ < n) push_back(v);
    while (n_ > n) pop_back();
  }
  void clear() { resize(0); }
  void reserve(std::size_t) {}  // nothing to do: capacity grows on demand

  iterator insert(const_iterator pos, T v) {
    const auto i = pos - begin();
    push_back(std::move(v));
    std::rotate(begin() + i, end() - 1, end());
    return begin() + i;
  }
  iterator erase(const_iterator pos) {
    const auto i = pos - begin();
    std::move(begin() + i + 1, end(), begin() + i);
    pop_back();
    return begin() + i;
  }

  bool operator==(const SmallVector& o) const {
    if (n_ != o.n_) return false;
    for (std::size_t i = 0; i < n_; ++i)  // a plain loop: std::equal became a memcmp call
      if (!(data()[i] == o.data()[i])) return false;
    return true;
  }

 private:
  bool on_heap() const { return n_ > N; }
  void to_heap() {
    large_.assign(std::make_move_iterator(small_.begin()), std::make_move_iterator(small_.end()));
    small_.fill(T());
  }
  void to_inline() {
    std::move(large_.begin(), large_.end(), small_.begin());
    large_ = std::vector<T>();
  }

  std::array<T, N> small_{};
  std::vector<T> large_;
  std::size_t n_ = 0;
};

}  // namespace ng
