// Packed-layer files: a packed layer's buffers written as they are, mapped read-only and shared
// when opened (no copy, no packing), so every process and worker on a host holds one copy.
//
// Layout (little-endian; docs/design.md "Packed-layer files"):
//   [0, 4096)  header: magic, file version, panel layout and its version, architecture, byte
//              order, weight format, the layer's configuration, the packed shapes, the file's
//              size, a checksum of the header, then the section table (name, offset, bytes,
//              checksum per section)
//   sections   "w13", "w2" (the packed panels), "w13_bias", "w2_bias" (f32, optional), and the
//              caller's blobs; each at an offset aligned to 4 KiB, or to 2 MiB when it is at
//              least that large (so a huge-page store could map it in huge pages)
// Everything is checked before the mapping is used: magic and version first (so a newer file
// is reported as such), then architecture, byte order and layout, the header checksum, the
// configuration (as packing would check it) and that every section lies inside the file with
// exactly the size the shapes give. Section checksums cover the weights (LayerFileOptions::verify).
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#if defined(_WIN32)
#include <process.h>
#define getpid _getpid
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "moe/packed.h"

namespace moe {

namespace {

constexpr char kMagic[8] = {'M', 'O', 'E', 'C', 'P', 'U', 'L', '\n'};
// The file format; a change of the header or the section rules is a new version.
constexpr uint32_t kFileVersion = 1;
// The version of format/panel.h's p4x32 panels: changes whenever their bytes do.
constexpr uint32_t kPanelLayoutVersion = 1;
constexpr uint32_t kByteOrderMark = 0x01020304;
constexpr size_t kHeaderBytes = 4096;
constexpr size_t kTableOffset = 128;
constexpr size_t kEntryBytes = 48;
constexpr size_t kNameBytes = 24;
constexpr size_t kMaxSections = (kHeaderBytes - kTableOffset) / kEntryBytes;
constexpr size_t kSmallAlignment = 4096;
constexpr size_t kLargeAlignment = size_t{2} << 20;
constexpr size_t kChecksumChunk = size_t{4} << 20;
constexpr size_t kChecksumOffset = 120;

#if defined(__x86_64__) || defined(_M_X64)
constexpr uint32_t kArch = 1;
#elif defined(__aarch64__) || defined(_M_ARM64)
constexpr uint32_t kArch = 2;
#else
constexpr uint32_t kArch = 0;
#endif

const char* arch_name(uint32_t arch) {
  switch (arch) {
    case 1: return "x64";
    case 2: return "arm64";
    default: return "another architecture";
  }
}

[[noreturn]] void fail(LayerFileError::Kind kind, const std::string& path, const std::string& message) {
  throw LayerFileError(kind, path + ": " + message);
}

// 64-bit hash of bytes: four lanes of multiply-rotate over 32-byte stripes, then the tail; a
// checksum against truncation, torn writes and bit rot, not against an adversary.
uint64_t hash_bytes(const uint8_t* p, size_t n, uint64_t seed) {
  constexpr uint64_t kP1 = 0x9E3779B185EBCA87ULL, kP2 = 0xC2B2AE3D27D4EB4FULL;
  auto round = [](uint64_t acc, uint64_t v) {
    acc += v * kP2;
    acc = (acc << 31) | (acc >> 33);
    return acc * kP1;
  };
  uint64_t lane[4] = {seed + kP1 + kP2, seed + kP2, seed, seed - kP1};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int l = 0; l < 4; ++l) {
      uint64_t v;
      std::memcpy(&v, p + i + 8 * l, 8);
      lane[l] = round(lane[l], v);
    }
  }
  uint64_t h = ((lane[0] << 1) | (lane[0] >> 63)) + ((lane[1] << 7) | (lane[1] >> 57)) +
               ((lane[2] << 12) | (lane[2] >> 52)) + ((lane[3] << 18) | (lane[3] >> 46));
  h ^= n;
  for (; i < n; ++i) h = (h ^ p[i]) * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  return h;
}

// A section's checksum: the hash of its 4 MiB chunks' hashes, the chunks hashed in parallel.
uint64_t checksum(const uint8_t* data, size_t bytes, unsigned threads) {
  const size_t chunks = (bytes + kChecksumChunk - 1) / kChecksumChunk;
  std::vector<uint64_t> hashes(chunks);
  ThreadPool::shared().run(chunks, threads, [&](size_t c) {
    const size_t begin = c * kChecksumChunk;
    hashes[c] = hash_bytes(data + begin, std::min(kChecksumChunk, bytes - begin), c);
  });
  return hash_bytes(reinterpret_cast<const uint8_t*>(hashes.data()), chunks * sizeof(uint64_t), bytes);
}

// Little-endian fields of the header (the byte order is checked before any other field is read).
struct Fields {
  uint8_t* p;
  template <typename T>
  void put(size_t at, T v) { std::memcpy(p + at, &v, sizeof v); }
};
template <typename T>
T get(const uint8_t* p, size_t at) {
  T v;
  std::memcpy(&v, p + at, sizeof v);
  return v;
}

// Field offsets.
enum : size_t {
  kVersionAt = 8, kLayoutAt = 12, kLayoutVersionAt = 16, kArchAt = 20, kByteOrderAt = 24, kFormatAt = 28,
  kActivationAt = 32, kAlphaAt = 36, kLimitAt = 40, kExpertsAt = 48, kHiddenAt = 56, kIntermediateAt = 64,
  kTopKAt = 72, kW13PanelAt = 80, kW2PanelAt = 88, kFileBytesAt = 96, kSectionsAt = 104, kModelExpertsAt = 112,
};
static_assert(kModelExpertsAt + 8 <= kChecksumOffset, "header fields overlap the checksum");

struct Section {
  std::string name;
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  size_t offset = 0;
  uint64_t sum = 0;
};

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }
size_t section_alignment(size_t bytes) { return bytes >= kLargeAlignment ? kLargeAlignment : kSmallAlignment; }

bool reserved_name(const std::string& name) {
  return name == "w13" || name == "w2" || name == "w13_bias" || name == "w2_bias" || name == "expert_ids";
}

std::string os_error(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// The file being written: closed (and the temporary file removed) unless committed.
struct TempFile {
  std::string path;
  std::FILE* f = nullptr;
  bool committed = false;
  ~TempFile() {
    if (f) std::fclose(f);
    if (!committed) std::remove(path.c_str());
  }
};

void write_at(TempFile& t, const std::string& path, size_t offset, const void* data, size_t bytes) {
  if (bytes == 0) return;
#if defined(_WIN32)
  if (_fseeki64(t.f, static_cast<long long>(offset), SEEK_SET) != 0) fail(LayerFileError::Kind::io, path, os_error("seek"));
#else
  if (fseeko(t.f, static_cast<off_t>(offset), SEEK_SET) != 0) fail(LayerFileError::Kind::io, path, os_error("seek"));
#endif
  if (std::fwrite(data, 1, bytes, t.f) != bytes) fail(LayerFileError::Kind::io, path, os_error("write"));
}

// The whole file in memory this process owns: a shared read-only mapping (POSIX), else a copy.
struct FileImage {
  const uint8_t* data = nullptr;
  size_t bytes = 0;
  bool mapped = false;
  AlignedBuffer copy;
  ~FileImage() {
#if !defined(_WIN32)
    if (mapped) munmap(const_cast<uint8_t*>(data), bytes);
#endif
  }
};

std::shared_ptr<FileImage> read_image(const std::string& path) {
  auto image = std::make_shared<FileImage>();
#if defined(_WIN32)
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(LayerFileError::Kind::io, path, os_error("open"));
  _fseeki64(f, 0, SEEK_END);
  const long long size = _ftelli64(f);
  _fseeki64(f, 0, SEEK_SET);
  if (size < 0) {
    std::fclose(f);
    fail(LayerFileError::Kind::io, path, os_error("size"));
  }
  image->bytes = static_cast<size_t>(size);
  image->copy = AlignedBuffer(image->bytes);
  const size_t got = image->bytes ? std::fread(image->copy.as<uint8_t>(), 1, image->bytes, f) : 0;
  std::fclose(f);
  if (got != image->bytes) fail(LayerFileError::Kind::io, path, os_error("read"));
  image->data = image->copy.as<uint8_t>();
#else
  // O_NONBLOCK: a FIFO in place of the file must not block the open (regular files ignore it).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(LayerFileError::Kind::io, path, os_error("open"));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const std::string e = os_error("stat");
    ::close(fd);
    fail(LayerFileError::Kind::io, path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(LayerFileError::Kind::format, path, "not a regular file");
  }
  image->bytes = static_cast<size_t>(st.st_size);
  if (image->bytes < kHeaderBytes) {
    ::close(fd);
    fail(LayerFileError::Kind::format, path,
         "not a packed-layer file (" + std::to_string(image->bytes) + " bytes, shorter than its header)");
  }
  void* m = mmap(nullptr, image->bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (m == MAP_FAILED) fail(LayerFileError::Kind::io, path, os_error("mmap"));
  image->data = static_cast<const uint8_t*>(m);
  image->mapped = true;
#if defined(MADV_HUGEPAGE)
  // Where the file system can back the mapping with huge pages (tmpfs with huge=, or read-only
  // THP for page-cache files), fewer TLB misses; elsewhere a no-op.
  madvise(m, image->bytes, MADV_HUGEPAGE);
#endif
#endif
  return image;
}

}  // namespace

void MoeLayer::save(const std::string& path, const std::vector<FileBlobView>& blobs) const {
  const Packed& p = *packed_;
  const MoeConfig& c = p.config;
  const unsigned threads = p.threads();
  std::vector<Section> sections;
  sections.push_back({"w13", p.w13.as<uint8_t>(), p.w13.bytes()});
  sections.push_back({"w2", p.w2.as<uint8_t>(), p.w2.bytes()});
  if (!p.w13_bias.empty()) {
    sections.push_back({"w13_bias", reinterpret_cast<const uint8_t*>(p.w13_bias.data()), p.w13_bias.size() * sizeof(float)});
  }
  if (!p.w2_bias.empty()) {
    sections.push_back({"w2_bias", reinterpret_cast<const uint8_t*>(p.w2_bias.data()), p.w2_bias.size() * sizeof(float)});
  }
  if (!c.expert_ids.empty()) {
    sections.push_back({"expert_ids", reinterpret_cast<const uint8_t*>(c.expert_ids.data()), c.expert_ids.size() * sizeof(uint32_t)});
  }
  for (const FileBlobView& b : blobs) {
    if (b.name.empty() || b.name.size() >= kNameBytes) {
      throw InvalidArgument("blob name '" + b.name + "': expected 1 to " + std::to_string(kNameBytes - 1) + " bytes");
    }
    if (reserved_name(b.name)) throw InvalidArgument("blob name '" + b.name + "': reserved for the packed layer");
    for (const Section& s : sections) {
      if (s.name == b.name) throw InvalidArgument("blob name '" + b.name + "': given twice");
    }
    sections.push_back({b.name, static_cast<const uint8_t*>(b.data), b.bytes});
  }
  if (sections.size() > kMaxSections) throw InvalidArgument("too many blobs: at most " + std::to_string(kMaxSections - 4));

  size_t end = kHeaderBytes;
  for (Section& s : sections) {
    s.offset = align_up(end, section_alignment(s.bytes));
    end = s.offset + s.bytes;
    s.sum = checksum(s.data, s.bytes, threads);
  }

  std::vector<uint8_t> header(kHeaderBytes, 0);
  Fields f{header.data()};
  std::memcpy(header.data(), kMagic, sizeof kMagic);
  f.put<uint32_t>(kVersionAt, kFileVersion);
  f.put<uint32_t>(kLayoutAt, static_cast<uint32_t>(p.kernels.decode->layout));
  f.put<uint32_t>(kLayoutVersionAt, kPanelLayoutVersion);
  f.put<uint32_t>(kArchAt, kArch);
  f.put<uint32_t>(kByteOrderAt, kByteOrderMark);
  f.put<uint32_t>(kFormatAt, static_cast<uint32_t>(c.weight_format));
  f.put<uint32_t>(kActivationAt, static_cast<uint32_t>(c.activation.kind));
  f.put<float>(kAlphaAt, c.activation.swiglu_alpha);
  f.put<float>(kLimitAt, c.activation.swiglu_limit);
  f.put<uint64_t>(kExpertsAt, c.num_experts);
  f.put<uint64_t>(kHiddenAt, c.hidden_size);
  f.put<uint64_t>(kIntermediateAt, c.intermediate_size);
  f.put<uint64_t>(kTopKAt, c.top_k);
  f.put<uint64_t>(kW13PanelAt, p.w13_shape.panel_bytes);
  f.put<uint64_t>(kW2PanelAt, p.w2_shape.panel_bytes);
  f.put<uint64_t>(kFileBytesAt, end);
  f.put<uint32_t>(kSectionsAt, static_cast<uint32_t>(sections.size()));
  f.put<uint64_t>(kModelExpertsAt, c.model_experts);
  for (size_t i = 0; i < sections.size(); ++i) {
    uint8_t* e = header.data() + kTableOffset + i * kEntryBytes;
    std::memcpy(e, sections[i].name.data(), sections[i].name.size());
    Fields{e}.put<uint64_t>(kNameBytes, sections[i].offset);
    Fields{e}.put<uint64_t>(kNameBytes + 8, sections[i].bytes);
    Fields{e}.put<uint64_t>(kNameBytes + 16, sections[i].sum);
  }
  f.put<uint64_t>(kChecksumOffset, hash_bytes(header.data(), kHeaderBytes, kFileVersion));

  // A name no other writer uses: pid and a per-process counter.
  static std::atomic<unsigned> serial{0};
  TempFile t;
  t.path = path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
  t.f = std::fopen(t.path.c_str(), "wb");
  if (!t.f) fail(LayerFileError::Kind::io, path, os_error("create"));
  // The header last: a file cut short by a crash has no valid header.
  for (const Section& s : sections) write_at(t, path, s.offset, s.data, s.bytes);
  if (end > kHeaderBytes && sections.back().bytes == 0) {
    const uint8_t zero = 0;  // the file reaches `end` even when the last section is empty
    write_at(t, path, end - 1, &zero, 1);
  }
  write_at(t, path, 0, header.data(), kHeaderBytes);
  if (std::fflush(t.f) != 0) fail(LayerFileError::Kind::io, path, os_error("write"));
  const int closed = std::fclose(t.f);
  t.f = nullptr;
  if (closed != 0) fail(LayerFileError::Kind::io, path, os_error("close"));
#if defined(_WIN32)
  std::remove(path.c_str());  // rename does not replace on Windows
#endif
  if (std::rename(t.path.c_str(), path.c_str()) != 0) fail(LayerFileError::Kind::io, path, os_error("rename"));
  t.committed = true;
}

OpenedLayer MoeLayer::open(const std::string& path, const LayerFileOptions& options) {
  using Kind = LayerFileError::Kind;
  std::shared_ptr<FileImage> image = read_image(path);
  const uint8_t* h = image->data;
  const size_t size = image->bytes;
  if (size < kHeaderBytes || std::memcmp(h, kMagic, sizeof kMagic) != 0) {
    fail(Kind::format, path, "not a packed-layer file (no moe-cpu header)");
  }
  const uint32_t version = get<uint32_t>(h, kVersionAt);
  if (version != kFileVersion) {
    fail(Kind::incompatible, path, "file version " + std::to_string(version) + ", this moe-cpu reads version " +
                                       std::to_string(kFileVersion) + ": pack and save the layer again");
  }
  const uint32_t arch = get<uint32_t>(h, kArchAt);
  if (arch != kArch) {
    fail(Kind::incompatible, path, std::string("written on ") + arch_name(arch) + ", this is " + arch_name(kArch) +
                                       ": pack and save the layer on this architecture");
  }
  if (get<uint32_t>(h, kByteOrderAt) != kByteOrderMark) fail(Kind::incompatible, path, "written with another byte order");
  const uint32_t layout = get<uint32_t>(h, kLayoutAt), layout_version = get<uint32_t>(h, kLayoutVersionAt);
  if (layout != static_cast<uint32_t>(ukernel::PanelLayout::p4x32) || layout_version != kPanelLayoutVersion) {
    fail(Kind::incompatible, path, "panel layout " + std::to_string(layout) + " version " + std::to_string(layout_version) +
                                       ", this moe-cpu packs layout 0 version " + std::to_string(kPanelLayoutVersion) +
                                       ": pack and save the layer again");
  }
  {
    std::vector<uint8_t> copy(h, h + kHeaderBytes);
    std::memset(copy.data() + kChecksumOffset, 0, 8);
    if (hash_bytes(copy.data(), kHeaderBytes, kFileVersion) != get<uint64_t>(h, kChecksumOffset)) {
      fail(Kind::format, path, "corrupt header (checksum mismatch)");
    }
  }
  const size_t file_bytes = get<uint64_t>(h, kFileBytesAt);
  if (size < file_bytes) {
    fail(Kind::format, path, "truncated: " + std::to_string(size) + " bytes, the header says " + std::to_string(file_bytes));
  }

  MoeConfig c;
  const uint32_t format = get<uint32_t>(h, kFormatAt), activation = get<uint32_t>(h, kActivationAt);
  if (format > static_cast<uint32_t>(WeightFormat::int8)) fail(Kind::format, path, "unknown weight format " + std::to_string(format));
  if (activation > static_cast<uint32_t>(Activation::gelu_tanh)) fail(Kind::format, path, "unknown activation " + std::to_string(activation));
  c.weight_format = static_cast<WeightFormat>(format);
  c.activation.kind = static_cast<Activation>(activation);
  c.activation.swiglu_alpha = get<float>(h, kAlphaAt);
  c.activation.swiglu_limit = get<float>(h, kLimitAt);
  c.num_experts = get<uint64_t>(h, kExpertsAt);
  c.hidden_size = get<uint64_t>(h, kHiddenAt);
  c.intermediate_size = get<uint64_t>(h, kIntermediateAt);
  c.top_k = get<uint64_t>(h, kTopKAt);
  c.threads = options.threads;
  // The packed bytes are in halves order, oriented: what packing made of the caller's layout.
  c.w13_layout = W13Layout::halves;
  c.model_experts = get<uint64_t>(h, kModelExpertsAt);
  // A subset layer's ids are a section: checked once read (below); placeholders until then.
  if (c.model_experts) {
    // (Every expert holds panels of at least 64 bytes: more experts than that is a lie.)
    if (c.num_experts > c.model_experts || c.num_experts > size / 64) {
      fail(Kind::format, path, "bad configuration: " + std::to_string(c.num_experts) + " experts held of " + std::to_string(c.model_experts));
    }
    c.expert_ids.resize(c.num_experts);
    for (size_t i = 0; i < c.num_experts; ++i) c.expert_ids[i] = static_cast<uint32_t>(i);
  }
  auto packed = std::make_unique<Packed>();
  Packed& p = *packed;
  try {
    prepare_packed(p, c);
  } catch (const InvalidArgument& e) {
    fail(Kind::format, path, std::string("bad configuration: ") + e.what());
  }
  if (p.kernels.decode->layout != static_cast<ukernel::PanelLayout>(layout)) {
    fail(Kind::incompatible, path, "the kernels of this CPU read another panel layout: pack and save the layer here");
  }
  if (p.w13_shape.panel_bytes != get<uint64_t>(h, kW13PanelAt) || p.w2_shape.panel_bytes != get<uint64_t>(h, kW2PanelAt)) {
    fail(Kind::incompatible, path, "panel sizes differ from what this moe-cpu packs: pack and save the layer again");
  }
  const size_t E = c.num_experts, H = c.hidden_size, I = c.intermediate_size;
  size_t w13_bytes, w2_bytes;
  if (__builtin_mul_overflow(2 * E, p.w13_shape.matrix_bytes, &w13_bytes) ||
      __builtin_mul_overflow(E, p.w2_shape.matrix_bytes, &w2_bytes)) {
    fail(Kind::format, path, "sizes past 2^64");
  }

  const uint32_t count = get<uint32_t>(h, kSectionsAt);
  if (count > kMaxSections) fail(Kind::format, path, "section table of " + std::to_string(count) + " entries");
  std::vector<Section> sections(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* e = h + kTableOffset + i * kEntryBytes;
    Section& s = sections[i];
    const size_t len = strnlen(reinterpret_cast<const char*>(e), kNameBytes);
    if (len == 0 || len == kNameBytes) fail(Kind::format, path, "section " + std::to_string(i) + " has no name");
    s.name.assign(reinterpret_cast<const char*>(e), len);
    s.offset = get<uint64_t>(e, kNameBytes);
    s.bytes = get<uint64_t>(e, kNameBytes + 8);
    s.sum = get<uint64_t>(e, kNameBytes + 16);
    if (s.offset < kHeaderBytes || s.offset % kSmallAlignment != 0 || s.offset > file_bytes || s.bytes > file_bytes - s.offset) {
      fail(Kind::format, path, "section '" + s.name + "' lies outside the file");
    }
    for (uint32_t j = 0; j < i; ++j) {
      const Section& o = sections[j];
      if (o.name == s.name) fail(Kind::format, path, "section '" + s.name + "' appears twice");
      if (s.offset < o.offset + o.bytes && o.offset < s.offset + s.bytes) {
        fail(Kind::format, path, "sections '" + o.name + "' and '" + s.name + "' overlap");
      }
    }
    s.data = h + s.offset;
  }
  auto find = [&](const char* name) -> const Section* {
    for (const Section& s : sections) {
      if (s.name == name) return &s;
    }
    return nullptr;
  };
  auto expect = [&](const char* name, size_t bytes, bool required) -> const Section* {
    const Section* s = find(name);
    if (!s) {
      if (required) fail(Kind::format, path, std::string("no section '") + name + "'");
      return nullptr;
    }
    if (s->bytes != bytes) {
      fail(Kind::format, path, std::string("section '") + name + "' has " + std::to_string(s->bytes) + " bytes, the shapes give " +
                                   std::to_string(bytes));
    }
    return s;
  };
  // A subset layer: its experts' ids, then the configuration checked again with them.
  if (c.model_experts) {
    const Section* ids = expect("expert_ids", E * sizeof(uint32_t), true);
    c.expert_ids.resize(E);
    std::memcpy(c.expert_ids.data(), ids->data, ids->bytes);
    try {
      prepare_packed(p, c);
    } catch (const InvalidArgument& e) {
      fail(Kind::format, path, std::string("bad configuration: ") + e.what());
    }
  }
  const Section* w13 = expect("w13", w13_bytes, true);
  const Section* w2 = expect("w2", w2_bytes, true);
  const Section* b13 = expect("w13_bias", E * 2 * I * sizeof(float), false);
  const Section* b2 = expect("w2_bias", E * H * sizeof(float), false);
  if ((w13->offset % section_alignment(w13->bytes)) || (w2->offset % section_alignment(w2->bytes))) {
    fail(Kind::format, path, "weight sections not aligned");
  }
  if (options.verify) {
    for (const Section& s : sections) {
      if (checksum(s.data, s.bytes, p.threads()) != s.sum) fail(Kind::format, path, "section '" + s.name + "' is corrupt (checksum mismatch)");
    }
  }

  p.w13 = AlignedBuffer(w13->data, w13->bytes, image);
  p.w2 = AlignedBuffer(w2->data, w2->bytes, image);
  auto floats = [](const Section* s) {
    std::vector<float> v(s ? s->bytes / sizeof(float) : 0);
    if (s) std::memcpy(v.data(), s->data, s->bytes);
    return v;
  };
  p.w13_bias = floats(b13);
  p.w2_bias = floats(b2);
  OpenedLayer opened;
  opened.mapped = image->mapped;
  for (const Section& s : sections) {
    if (reserved_name(s.name)) continue;
    opened.blobs.push_back({s.name, std::vector<uint8_t>(s.data, s.data + s.bytes)});
  }
  opened.layer = std::make_shared<const MoeLayer>(std::move(packed));
  return opened;
}

}  // namespace moe
