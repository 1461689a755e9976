// Guest memory for vhost-user: regions mapped from the fds the VMM sends, translated from guest
// physical addresses (descriptors) and from frontend virtual addresses (ring addresses), and
// exposed to JavaScript as external ArrayBuffers. A mapping lives as long as any holder (the
// table, a ring, or an ArrayBuffer view in JavaScript) still refers to it, so removing a region
// while requests are in flight never leaves a dangling pointer.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace damselfly {

struct Mapping {
  uint8_t* base = nullptr;
  uint64_t size = 0;
  ~Mapping();
};

struct Region {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t uaddr = 0;
  uint64_t mmap_offset = 0;
  std::shared_ptr<Mapping> map;
  // JavaScript ArrayBuffers over windows of the mapping (V8 limits one ArrayBuffer's length).
  std::vector<Napi::Reference<Napi::ArrayBuffer>> windows;
  // Index of windows[0] among all regions' windows, in table order (see MemoryTable::windows()).
  size_t first_window = 0;
};

// One piece of a translated guest range: a window ArrayBuffer, an offset in it and a length.
struct Piece {
  const Region* region;
  size_t window;
  uint64_t offset;  // inside the window
  uint64_t len;
};

class MemoryTable : public Napi::ObjectWrap<MemoryTable> {
 public:
  static constexpr uint64_t kWindow = 1ull << 30;
  static constexpr size_t kMaxRegions = 509;  // as rust-vmm's GET_MAX_MEM_SLOTS

  static Napi::Function Define(Napi::Env env);
  explicit MemoryTable(const Napi::CallbackInfo& info);
  // The MemoryTable wrapped by `v`, or nullptr if `v` is not a MemoryTable.
  static MemoryTable* From(const Napi::Value& v);

  // Bumped on every change; rings re-resolve their addresses when it moves.
  uint64_t generation() const { return generation_; }

  // Splits [gpa, gpa+len) into pieces over (possibly several adjacent) regions; false if any byte
  // is outside guest memory.
  bool TranslateGpa(uint64_t gpa, uint64_t len, std::vector<Piece>* out) const;
  // A host pointer for [uaddr, uaddr+len) of the frontend's address space, inside one region.
  uint8_t* TranslateUaddr(uint64_t uaddr, uint64_t len, std::shared_ptr<Mapping>* keep) const;
  // A host pointer for [gpa, gpa+len) inside one region (indirect descriptor tables).
  const uint8_t* GpaPointer(uint64_t gpa, uint64_t len) const;
  Napi::ArrayBuffer Window(const Piece& p) const;
  // The piece's window among all regions' windows: its index in what windows() returns.
  size_t FlatWindow(const Piece& p) const { return p.region->first_window + p.window; }

 private:
  Napi::Value SetTable(const Napi::CallbackInfo& info);
  Napi::Value AddRegion(const Napi::CallbackInfo& info);
  Napi::Value RemoveRegion(const Napi::CallbackInfo& info);
  Napi::Value Regions(const Napi::CallbackInfo& info);
  Napi::Value GpaView(const Napi::CallbackInfo& info);
  Napi::Value Windows(const Napi::CallbackInfo& info);
  // After a change: numbers the windows again and bumps the generation.
  void Changed();

  // Maps one region from its fd (the fd is not kept; the caller closes it).
  std::unique_ptr<Region> MapRegion(Napi::Env env, uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t off, int fd);
  bool Overlaps(const Region& r) const;

  std::vector<std::unique_ptr<Region>> regions_;
  uint64_t generation_ = 1;
  static Napi::FunctionReference* constructor_;
};

void InitVring(Napi::Env env, Napi::Object exports);

}  // namespace damselfly
