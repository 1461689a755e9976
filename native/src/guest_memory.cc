// The guest memory table: see guest_memory.h.
#include "guest_memory.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common.h"

namespace damselfly {

Mapping::~Mapping() {
  if (base != nullptr) ::munmap(base, size);
}

namespace {

struct WindowHint {
  std::shared_ptr<Mapping> keep;
};

uint64_t U64Arg(const Napi::Value& v, const char* what) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(v.Env(), std::string(what) + " is out of range");
    return x;
  }
  int64_t x = IntArg(v, what);
  if (x < 0) throw Napi::RangeError::New(v.Env(), std::string(what) + " must not be negative");
  return static_cast<uint64_t>(x);
}

}  // namespace

Napi::FunctionReference* MemoryTable::constructor_ = nullptr;

MemoryTable* MemoryTable::From(const Napi::Value& v) {
  if (constructor_ == nullptr || !v.IsObject() || !v.As<Napi::Object>().InstanceOf(constructor_->Value())) return nullptr;
  return Napi::ObjectWrap<MemoryTable>::Unwrap(v.As<Napi::Object>());
}

Napi::Function MemoryTable::Define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "MemoryTable",
                     {InstanceMethod("setTable", &MemoryTable::SetTable), InstanceMethod("addRegion", &MemoryTable::AddRegion),
                      InstanceMethod("removeRegion", &MemoryTable::RemoveRegion), InstanceMethod("regions", &MemoryTable::Regions),
                      InstanceMethod("gpaView", &MemoryTable::GpaView), InstanceMethod("windows", &MemoryTable::Windows)});
  constructor_ = new Napi::FunctionReference(Napi::Persistent(f));  // lives as long as the addon
  return f;
}

MemoryTable::MemoryTable(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MemoryTable>(info) {}

std::unique_ptr<Region> MemoryTable::MapRegion(Napi::Env env, uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t off, int fd) {
  long page = ::sysconf(_SC_PAGESIZE);
  if (size == 0 || size > (1ull << 46) || gpa + size < gpa || uaddr + size < uaddr) {
    throw Napi::RangeError::New(env, "memory region of invalid size");
  }
  if (off % static_cast<uint64_t>(page) != 0) throw Napi::RangeError::New(env, "memory region mmap_offset is not page aligned");
  // A file shorter than the region maps, but touching the part past its end raises SIGBUS in the
  // thread that reads a descriptor there (vm-memory refuses such a region too: MappingPastEof).
  struct stat st;
  if (::fstat(fd, &st) != 0) ThrowSys(env, "fstat");
  if (S_ISREG(st.st_mode) && (static_cast<uint64_t>(st.st_size) < off || static_cast<uint64_t>(st.st_size) - off < size)) {
    throw Napi::RangeError::New(env, "memory region of " + std::to_string(size) + " bytes at file offset " + std::to_string(off) +
                                         " lies past the end of its " + std::to_string(st.st_size) + "-byte file");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, static_cast<off_t>(off));
  if (p == MAP_FAILED) ThrowSys(env, "mmap");
  auto r = std::make_unique<Region>();
  r->gpa = gpa;
  r->size = size;
  r->uaddr = uaddr;
  r->mmap_offset = off;
  r->map = std::make_shared<Mapping>();
  r->map->base = static_cast<uint8_t*>(p);
  r->map->size = size;
  for (uint64_t w = 0; w < size; w += kWindow) {
    uint64_t len = std::min(kWindow, size - w);
    auto* hint = new WindowHint{r->map};
    // SAFETY: [base + w, base + w + len) lies inside the mapping, which the hint keeps alive until V8
    // collects this ArrayBuffer.
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, r->map->base + w, static_cast<size_t>(len), [](Napi::Env, void*, WindowHint* h) { delete h; }, hint);
    r->windows.push_back(Napi::Persistent(ab));
  }
  return r;
}

bool MemoryTable::Overlaps(const Region& r) const {
  for (const auto& o : regions_) {
    if (r.gpa < o->gpa + o->size && o->gpa < r.gpa + r.size) return true;
  }
  return false;
}

// setTable([{gpa, size, uaddr, offset}], fds): replaces the whole table, or changes nothing on error.
Napi::Value MemoryTable::SetTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray() || !info[1].IsArray()) throw Napi::TypeError::New(env, "setTable(regions[], fds[])");
  auto regs = info[0].As<Napi::Array>();
  auto fds = info[1].As<Napi::Array>();
  if (regs.Length() != fds.Length()) throw Napi::RangeError::New(env, "one fd per region is required");
  if (regs.Length() > kMaxRegions) throw Napi::RangeError::New(env, "too many memory regions");
  std::vector<std::unique_ptr<Region>> next;
  for (uint32_t i = 0; i < regs.Length(); i++) {
    Napi::Object o = regs.Get(i).As<Napi::Object>();
    auto r = MapRegion(env, U64Arg(o.Get("gpa"), "gpa"), U64Arg(o.Get("size"), "size"), U64Arg(o.Get("uaddr"), "uaddr"),
                       U64Arg(o.Get("offset"), "offset"), static_cast<int>(IntArg(fds.Get(i), "fd")));
    for (const auto& o2 : next) {
      if (r->gpa < o2->gpa + o2->size && o2->gpa < r->gpa + r->size) throw Napi::RangeError::New(env, "memory regions overlap");
    }
    next.push_back(std::move(r));
  }
  regions_ = std::move(next);
  Changed();
  return env.Undefined();
}

// addRegion({gpa, size, uaddr, offset}, fd)
Napi::Value MemoryTable::AddRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (regions_.size() >= kMaxRegions) throw Napi::RangeError::New(env, "no free memory slot");
  Napi::Object o = info[0].As<Napi::Object>();
  auto r = MapRegion(env, U64Arg(o.Get("gpa"), "gpa"), U64Arg(o.Get("size"), "size"), U64Arg(o.Get("uaddr"), "uaddr"),
                     U64Arg(o.Get("offset"), "offset"), static_cast<int>(IntArg(info[1], "fd")));
  if (Overlaps(*r)) throw Napi::RangeError::New(env, "the new memory region overlaps an existing one");
  regions_.push_back(std::move(r));
  Changed();
  return env.Undefined();
}

// removeRegion({gpa, size, uaddr}) -> whether a region was removed (matched by gpa, size and uaddr).
Napi::Value MemoryTable::RemoveRegion(const Napi::CallbackInfo& info) {
  Napi::Object o = info[0].As<Napi::Object>();
  uint64_t gpa = U64Arg(o.Get("gpa"), "gpa");
  uint64_t size = U64Arg(o.Get("size"), "size");
  uint64_t uaddr = U64Arg(o.Get("uaddr"), "uaddr");
  auto it = std::find_if(regions_.begin(), regions_.end(),
                         [&](const std::unique_ptr<Region>& r) { return r->gpa == gpa && r->size == size && r->uaddr == uaddr; });
  if (it == regions_.end()) return Napi::Boolean::New(info.Env(), false);
  regions_.erase(it);
  Changed();
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value MemoryTable::Regions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t i = 0; i < regions_.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("gpa", Napi::BigInt::New(env, regions_[i]->gpa));
    o.Set("size", Napi::BigInt::New(env, regions_[i]->size));
    o.Set("uaddr", Napi::BigInt::New(env, regions_[i]->uaddr));
    out.Set(i, o);
  }
  return out;
}

bool MemoryTable::TranslateGpa(uint64_t gpa, uint64_t len, std::vector<Piece>* out) const {
  uint64_t pos = gpa;
  uint64_t left = len;
  if (gpa + len < gpa) return false;
  while (left > 0) {
    const Region* hit = nullptr;
    for (const auto& r : regions_) {
      if (pos >= r->gpa && pos - r->gpa < r->size) {
        hit = r.get();
        break;
      }
    }
    if (hit == nullptr) return false;
    uint64_t off = pos - hit->gpa;
    uint64_t n = std::min(left, hit->size - off);
    // Split at ArrayBuffer window boundaries too.
    while (n > 0) {
      size_t w = static_cast<size_t>(off / kWindow);
      uint64_t woff = off % kWindow;
      uint64_t take = std::min(n, kWindow - woff);
      out->push_back(Piece{hit, w, woff, take});
      off += take;
      pos += take;
      left -= take;
      n -= take;
    }
  }
  return true;
}

uint8_t* MemoryTable::TranslateUaddr(uint64_t uaddr, uint64_t len, std::shared_ptr<Mapping>* keep) const {
  for (const auto& r : regions_) {
    if (uaddr >= r->uaddr && uaddr - r->uaddr < r->size && len <= r->size - (uaddr - r->uaddr)) {
      *keep = r->map;
      // SAFETY: [uaddr, uaddr+len) was just checked to lie inside this region.
      return r->map->base + (uaddr - r->uaddr);
    }
  }
  return nullptr;
}

const uint8_t* MemoryTable::GpaPointer(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa)) {
      // SAFETY: [gpa, gpa+len) lies inside this region by the check above.
      return r->map->base + (gpa - r->gpa);
    }
  }
  return nullptr;
}

void MemoryTable::Changed() {
  size_t n = 0;
  for (auto& r : regions_) {
    r->first_window = n;
    n += r->windows.size();
  }
  generation_++;
}

// windows() -> ArrayBuffer[]: every region's windows in table order; a piece's window is
// windows()[FlatWindow(piece)] until the table changes (its generation, which popInto reports).
Napi::Value MemoryTable::Windows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& r : regions_) {
    for (const auto& w : r->windows) out.Set(i++, w.Value());
  }
  return out;
}

Napi::ArrayBuffer MemoryTable::Window(const Piece& p) const {
  return p.region->windows[p.window].Value();
}

// gpaView(gpa, len) -> Uint8Array[]: views of a guest range (tests and the test frontend).
Napi::Value MemoryTable::GpaView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Piece> pieces;
  if (!TranslateGpa(U64Arg(info[0], "gpa"), U64Arg(info[1], "len"), &pieces)) throw Napi::RangeError::New(env, "range outside guest memory");
  Napi::Array out = Napi::Array::New(env);
  for (uint32_t i = 0; i < pieces.size(); i++) {
    out.Set(i, Napi::Uint8Array::New(env, pieces[i].len, Window(pieces[i]), pieces[i].offset));
  }
  return out;
}

}  // namespace damselfly
