#include "image.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>

#include "error.hpp"

namespace ev {
namespace {

int bytes_per_pixel(int32_t format) {
  switch (format) {
    case EV_PIXEL_RGB: return 3;
    case EV_PIXEL_RGBA:
    case EV_PIXEL_BGRA: return 4;
    default: return 1;  // the Y plane of the YUV formats
  }
}

bool is_yuv(int32_t format) {
  return format == EV_PIXEL_NV12 || format == EV_PIXEL_NV21 || format == EV_PIXEL_I420;
}

int stride_of(const ev_image& im, int plane, int packed) { return im.strides[plane] ? im.strides[plane] : packed; }

// BT.601 in 16.16 fixed point, exactly sdk/camera.py's integer formulas.
constexpr int kShift = 16, kHalf = 1 << (kShift - 1);
inline uint8_t clip8(int v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

struct Coefficients {  // y scale and offset, and the four chroma weights, times 65536
  int y_mul, y_off, rv, gu, gv, bu;
};
constexpr Coefficients kFull = {65536, 0, 91881, 22554, 46802, 116130};
constexpr Coefficients kVideo = {76309, 16, 104597, 25675, 53279, 132201};

// OpenCV's INTER_LINEAR taps of destination index d (resize.cpp): source position (d + 0.5) * src / dst - 0.5 in
// float, floored; along x the weight is dropped at the edges (index clamped, fraction 0), along y only the indices
// are clamped. Weights in 11 bits (INTER_RESIZE_COEF_SCALE = 2048), rounded half to even.
struct Tap {
  int i0, i1;
  int w0, w1;
};

std::vector<Tap> taps(int src, int dst, int first, int count, bool along_x) {
  const double scale = static_cast<double>(src) / dst;
  std::vector<Tap> out(static_cast<size_t>(count));
  for (int k = 0; k < count; ++k) {
    float f = static_cast<float>((first + k + 0.5) * scale - 0.5);
    int i = static_cast<int>(std::floor(f));
    f -= static_cast<float>(i);
    if (along_x && i < 0) f = 0.f, i = 0;
    if (along_x && i >= src - 1) f = 0.f, i = src - 1;
    const int w1 = static_cast<int>(std::nearbyint(f * 2048.f));
    const int w0 = static_cast<int>(std::nearbyint((1.f - f) * 2048.f));
    out[static_cast<size_t>(k)] = {std::clamp(i, 0, src - 1), std::clamp(i + 1, 0, src - 1), w0, w1};
  }
  return out;
}

}  // namespace

void check_image(const ev_image& im) {
  const std::string size = std::to_string(im.width) + "x" + std::to_string(im.height);
  if (im.format < EV_PIXEL_RGB || im.format > EV_PIXEL_I420)
    throw Error(EV_ERR_BAD_FRAME, "unknown pixel format " + std::to_string(im.format) +
                                      " (ev_pixel_format: RGB 0, RGBA 1, BGRA 2, NV12 3, NV21 4, I420 5)");
  if (im.width < 1 || im.height < 1 || im.width > 65536 || im.height > 65536)
    throw Error(EV_ERR_BAD_FRAME, "image size " + size + " is not valid");
  if (is_yuv(im.format) && (im.width % 2 || im.height % 2))
    throw Error(EV_ERR_BAD_FRAME, "a 4:2:0 image has an even width and height, got " + size);
  if (im.rotation != 0 && im.rotation != 90 && im.rotation != 180 && im.rotation != 270)
    throw Error(EV_ERR_BAD_FRAME, "rotation must be 0, 90, 180 or 270 degrees, got " + std::to_string(im.rotation));
  const int planes = im.format == EV_PIXEL_I420 ? 3 : (is_yuv(im.format) ? 2 : 1);
  const int rows[3] = {im.width * bytes_per_pixel(im.format), im.format == EV_PIXEL_I420 ? im.width / 2 : im.width,
                       im.width / 2};
  for (int k = 0; k < planes; ++k) {
    if (!im.planes[k]) throw Error(EV_ERR_BAD_FRAME, "image plane " + std::to_string(k) + " is NULL");
    if (im.strides[k] != 0 && im.strides[k] < rows[k])
      throw Error(EV_ERR_BAD_FRAME, "plane " + std::to_string(k) + " stride " + std::to_string(im.strides[k]) +
                                        " is shorter than its rows (" + std::to_string(rows[k]) + " bytes)");
  }
}

void resized_size(int upright_w, int upright_h, int short_side, int* out_w, int* out_h) {
  if (std::min(upright_w, upright_h) == short_side) {
    *out_w = upright_w;
    *out_h = upright_h;
  } else if (upright_h <= upright_w) {
    *out_h = short_side;
    *out_w = std::max(short_side, static_cast<int>(std::nearbyint(static_cast<double>(upright_w) * short_side / upright_h)));
  } else {
    *out_w = short_side;
    *out_h = std::max(short_side, static_cast<int>(std::nearbyint(static_cast<double>(upright_h) * short_side / upright_w)));
  }
}

namespace {

// The crop's pixels, in three stages per filtered row, each a loop over the crop's columns without a per-pixel
// branch; the last two are loops the compiler vectorises (GCC -O3: SSE2 / NEON; on x86-64 with glibc also AVX2 and
// SSE4.2 clones of each, picked at load time: the SSE2 code alone is 2x slower, with no 32-bit multiply or min):
//   gather:     for each horizontal tap k, the stored bytes of its two source pixels (a = i0, b = i1), through
//               offsets computed once per frame (rotation and strides are in them); along a stored row the two are
//               neighbours and read at once;
//   horizontal: those bytes to RGB (BT.601 16.16 for YUV, the scalar kernel's arithmetic) and OpenCV's first
//               pass, r = a * w0 + b * w1 (11-bit weights), kept as r >> 4 in int16 lanes (all the second pass
//               reads of it; r <= 255 * 2049, so r >> 4 fits);
//   vertical:   OpenCV's second pass on two filtered rows, clip8((((w0 * r0) >> 16) + ((w1 * r1) >> 16) + 2) >> 2),
//               a multiply-high on int16 lanes (as OpenCV's SIMD), written as packed RGB.
// Filtered rows are planar (R, G, B runs of `size`) and the last two are kept: each source row is filtered once.
// Bit-exact with the scalar kernel this replaced (tests/test_camera.py pins the bytes).
#if defined(__x86_64__) && defined(__linux__) && !defined(__ANDROID__) && defined(__GNUC__) && !defined(__clang__)
#define EV_KERNEL __attribute__((target_clones("avx2", "arch=x86-64-v2", "default")))  // v2: SSE4.2, not SSE2 alone
#elif defined(__x86_64__) && defined(__linux__) && !defined(__ANDROID__) && defined(__clang__)
#define EV_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define EV_KERNEL
#endif

// The gathered bytes of tap k's two source pixels (a = i0, b = i1), as stored: RGB / RGBA / BGRA: pa / pb hold
// the pixel's bytes at 4 k (3 or 4 of them); YUV: pa / pb its Y byte at k, ca / cb its chroma bytes at 2 k (U V for
// NV12 and I420, V U for NV21).
template <int Format>
inline __attribute__((always_inline)) void horizontal_impl(const uint8_t* __restrict pa, const uint8_t* __restrict pb,
                                                             const uint8_t* __restrict ca, const uint8_t* __restrict cb,
                                                             const int16_t* __restrict q0,
                                                             const int16_t* __restrict q1,
                                                             const int16_t* __restrict m0,
                                                             const int16_t* __restrict m1, int n, Coefficients k,
                                                             int16_t* __restrict hr, int16_t* __restrict hg,
                                                             int16_t* __restrict hb) {
  for (int i = 0; i < n; ++i) {
    int ra, ga, ba, rb, gb, bb;
    if constexpr (Format == EV_PIXEL_NV12 || Format == EV_PIXEL_NV21 || Format == EV_PIXEL_I420) {
      constexpr int u = Format == EV_PIXEL_NV21 ? 1 : 0;
      const int ua = ca[2 * i + u] - 128, va = ca[2 * i + 1 - u] - 128;
      const int ub = cb[2 * i + u] - 128, vb = cb[2 * i + 1 - u] - 128;
      const int la = (pa[i] - k.y_off) * k.y_mul + kHalf, lb = (pb[i] - k.y_off) * k.y_mul + kHalf;
      ra = (la + k.rv * va) >> kShift, rb = (lb + k.rv * vb) >> kShift;
      ga = (la - k.gu * ua - k.gv * va) >> kShift, gb = (lb - k.gu * ub - k.gv * vb) >> kShift;
      ba = (la + k.bu * ua) >> kShift, bb = (lb + k.bu * ub) >> kShift;
      ra = std::min(std::max(ra, 0), 255), rb = std::min(std::max(rb, 0), 255);
      ga = std::min(std::max(ga, 0), 255), gb = std::min(std::max(gb, 0), 255);
      ba = std::min(std::max(ba, 0), 255), bb = std::min(std::max(bb, 0), 255);
    } else {
      constexpr int r = Format == EV_PIXEL_BGRA ? 2 : 0, b = 2 - r;
      ra = pa[4 * i + r], ga = pa[4 * i + 1], ba = pa[4 * i + b];
      rb = pb[4 * i + r], gb = pb[4 * i + 1], bb = pb[4 * i + b];
    }
    // (a w0 + b w1) >> 4 in 16-bit lanes: w = 16 q + m, so a w0 + b w1 = 16 (a q0 + b q1) + (a m0 + b m1), where
    // a q0 + b q1 <= 255 * 128 (q0 + q1 <= 128 as w0 + w1 <= 2049) and a m0 + b m1 <= 255 * 30
    const uint16_t qa = static_cast<uint16_t>(q0[i]), qb = static_cast<uint16_t>(q1[i]);
    const uint16_t ma = static_cast<uint16_t>(m0[i]), mb = static_cast<uint16_t>(m1[i]);
    const uint16_t pr = static_cast<uint16_t>(ra), pg = static_cast<uint16_t>(ga), pbl = static_cast<uint16_t>(ba);
    const uint16_t sr = static_cast<uint16_t>(rb), sg = static_cast<uint16_t>(gb), sbl = static_cast<uint16_t>(bb);
    const uint16_t hir = static_cast<uint16_t>(pr * qa + sr * qb), lor = static_cast<uint16_t>(pr * ma + sr * mb);
    const uint16_t hig = static_cast<uint16_t>(pg * qa + sg * qb), log_ = static_cast<uint16_t>(pg * ma + sg * mb);
    const uint16_t hib = static_cast<uint16_t>(pbl * qa + sbl * qb), lob = static_cast<uint16_t>(pbl * ma + sbl * mb);
    hr[i] = static_cast<int16_t>(static_cast<uint16_t>(hir + (lor >> 4)));
    hg[i] = static_cast<int16_t>(static_cast<uint16_t>(hig + (log_ >> 4)));
    hb[i] = static_cast<int16_t>(static_cast<uint16_t>(hib + (lob >> 4)));
  }
}

#define EV_HORIZONTAL(name, format)                                                                              \
  EV_KERNEL void name(const uint8_t* __restrict pa, const uint8_t* __restrict pb, const uint8_t* __restrict ca,    \
                      const uint8_t* __restrict cb, const int16_t* __restrict q0, const int16_t* __restrict q1,   \
                      const int16_t* __restrict m0, const int16_t* __restrict m1, int n, Coefficients k,          \
                      int16_t* __restrict hr, int16_t* __restrict hg, int16_t* __restrict hb) {                   \
    horizontal_impl<format>(pa, pb, ca, cb, q0, q1, m0, m1, n, k, hr, hg, hb);                                    \
  }
EV_HORIZONTAL(horizontal_rgb, EV_PIXEL_RGB)
EV_HORIZONTAL(horizontal_bgra, EV_PIXEL_BGRA)
EV_HORIZONTAL(horizontal_uv, EV_PIXEL_NV12)
EV_HORIZONTAL(horizontal_vu, EV_PIXEL_NV21)
#undef EV_HORIZONTAL

EV_KERNEL void vertical(const int16_t* __restrict r0, const int16_t* __restrict r1, int w0, int w1, int n,
                        uint8_t* __restrict out) {
  // in 16-bit lanes: each product's high half is <= 2048 * 32655 >> 16 = 1020, their sum + 2 <= 2042
  const int16_t a = static_cast<int16_t>(w0), b = static_cast<int16_t>(w1);
  for (int i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) {
      const int16_t x = static_cast<int16_t>((a * r0[c * n + i]) >> 16);
      const int16_t y = static_cast<int16_t>((b * r1[c * n + i]) >> 16);
      const int16_t v = static_cast<int16_t>(static_cast<int16_t>(x + y + 2) >> 2);
      out[3 * i + c] = static_cast<uint8_t>(std::min<int16_t>(v, 255));  // v >= 0: pixels, weights are
    }
  }
}

// The vertical pass writing the program's float32 input instead of uint8: the same int16 arithmetic, then per
// channel float(v) * mul[c] + add[c] in float32 (two roundings, no FMA: the core builds with -ffp-contract=off), so
// the values are bit-identical to sdk's table np.arange(256, dtype=np.float32)[:, None] * mul + add. Planar (CHW):
// channel c of crop row cy at out[c * plane + cy * n]; packed (HWC): pixel i of the row at out[3 * i].
EV_KERNEL void vertical_planar(const int16_t* __restrict r0, const int16_t* __restrict r1, int w0, int w1, int n,
                               const float* __restrict mul, const float* __restrict add, size_t plane,
                               float* __restrict out) {
  const int16_t a = static_cast<int16_t>(w0), b = static_cast<int16_t>(w1);
  for (int c = 0; c < 3; ++c) {
    const float m = mul[c], d = add[c];
    const int16_t* __restrict p0 = r0 + c * n;
    const int16_t* __restrict p1 = r1 + c * n;
    float* __restrict o = out + c * plane;
    for (int i = 0; i < n; ++i) {
      const int16_t x = static_cast<int16_t>((a * p0[i]) >> 16);
      const int16_t y = static_cast<int16_t>((b * p1[i]) >> 16);
      const int16_t v = std::min<int16_t>(static_cast<int16_t>(static_cast<int16_t>(x + y + 2) >> 2), 255);
      o[i] = static_cast<float>(v) * m + d;
    }
  }
}

EV_KERNEL void vertical_packed(const int16_t* __restrict r0, const int16_t* __restrict r1, int w0, int w1, int n,
                               const float* __restrict mul, const float* __restrict add, float* __restrict out) {
  const int16_t a = static_cast<int16_t>(w0), b = static_cast<int16_t>(w1);
  const float m0 = mul[0], m1 = mul[1], m2 = mul[2], d0 = add[0], d1 = add[1], d2 = add[2];
  for (int i = 0; i < n; ++i) {
    int16_t v[3];
    for (int c = 0; c < 3; ++c) {
      const int16_t x = static_cast<int16_t>((a * r0[c * n + i]) >> 16);
      const int16_t y = static_cast<int16_t>((b * r1[c * n + i]) >> 16);
      v[c] = std::min<int16_t>(static_cast<int16_t>(static_cast<int16_t>(x + y + 2) >> 2), 255);
    }
    out[3 * i] = static_cast<float>(v[0]) * m0 + d0;
    out[3 * i + 1] = static_cast<float>(v[1]) * m1 + d1;
    out[3 * i + 2] = static_cast<float>(v[2]) * m2 + d2;
  }
}

// The crop's filtered rows, two per crop row (see above), each pair handed to row(r0, r1, w0, w1, cy), the
// vertical pass writing crop row cy.
template <int Format, typename Row>
void crop_pixels(const ev_image& im, const std::vector<Tap>& tx, const std::vector<Tap>& ty, int size, Row&& row_out) {
  constexpr bool kYuv = Format == EV_PIXEL_NV12 || Format == EV_PIXEL_NV21 || Format == EV_PIXEL_I420;
  constexpr int bpp = Format == EV_PIXEL_RGB ? 3 : (kYuv ? 1 : 4);
  const bool transposed = im.rotation == 90 || im.rotation == 270;
  const ptrdiff_t s0 = stride_of(im, 0, im.width * bpp);
  const ptrdiff_t s1 = stride_of(im, 1, Format == EV_PIXEL_I420 ? im.width / 2 : im.width);
  const ptrdiff_t s2 = stride_of(im, 2, im.width / 2);
  // upright column u -> the stored coordinate it fixes (x, or y when transposed); upright row v likewise
  auto col = [&](int u) {
    switch (im.rotation) {
      case 90: return im.height - 1 - u;
      case 180: return im.width - 1 - u;
      default: return u;  // 0: x, 270: y
    }
  };
  auto row = [&](int v) {
    switch (im.rotation) {
      case 180: return im.height - 1 - v;
      case 270: return im.width - 1 - v;
      default: return v;  // 0: y, 90: x
    }
  };
  const int n = size;
  const size_t un = static_cast<size_t>(n);
  // Along a stored row (rotation 0 / 180) a tap's two pixels are neighbours, or its second weight is 0 (an edge, or
  // no resize): each tap then reads the pair of stored pixels (x, x + 1) at once, its weights in that order.
  // Otherwise (along a stored column, or a 1 px wide image), per tap and pixel (a, b): the offsets of its bytes from
  // the row's bases, plane 0 (Y / RGB), 1 (UV or U), 2 (V).
  bool paired = !transposed && im.width >= 2;
  std::vector<ptrdiff_t> pair(paired ? un : 0);
  std::vector<int16_t> wq(4 * un);  // the horizontal weights w0 >> 4, w1 >> 4, w0 & 15, w1 & 15 (runs of size)
  auto weigh = [&](size_t k, int wa, int wb) {
    wq[k] = static_cast<int16_t>(wa >> 4), wq[un + k] = static_cast<int16_t>(wb >> 4);
    wq[2 * un + k] = static_cast<int16_t>(wa & 15), wq[3 * un + k] = static_cast<int16_t>(wb & 15);
  };
  for (size_t k = 0; k < un && paired; ++k) {
    const int xa = col(tx[k].i0), xb = col(tx[k].i1), wa = tx[k].w0, wb = tx[k].w1;
    if (xb == xa + 1 || (wb == 0 && xa + 1 < im.width)) {
      pair[k] = xa, weigh(k, wa, wb);
    } else if (xb == xa - 1 || wb == 0) {
      pair[k] = xa - 1, weigh(k, wb, wa);
    } else {
      paired = false;  // not the case for OpenCV's taps
    }
  }
  std::vector<ptrdiff_t> off(6 * un);
  for (size_t k = 0; k < un && !paired; ++k) {
    ptrdiff_t *o0 = off.data(), *o1 = o0 + 2 * un, *o2 = o1 + 2 * un;
    weigh(k, tx[k].w0, tx[k].w1);
    for (int side = 0; side < 2; ++side) {
      const ptrdiff_t c = col(side ? tx[k].i1 : tx[k].i0);
      const size_t j = 2 * k + static_cast<size_t>(side);
      if (transposed) {  // c is a stored row
        o0[j] = c * s0, o1[j] = (c >> 1) * s1, o2[j] = (c >> 1) * s2;
      } else {  // c is a stored column
        o0[j] = c * bpp, o1[j] = Format == EV_PIXEL_I420 ? c >> 1 : c & ~ptrdiff_t{1}, o2[j] = c >> 1;
      }
    }
  }
  const Coefficients coef = im.full_range ? kFull : kVideo;
  // the gathered bytes (see horizontal_impl)
  std::vector<uint8_t> gathered(12 * un);
  std::vector<int16_t> rows[2] = {std::vector<int16_t>(3 * un), std::vector<int16_t>(3 * un)};
  int cached[2] = {-1, -1};  // the upright rows rows[0] / rows[1] hold
  auto filtered = [&](int v, int keep) -> const int16_t* {
    for (int s = 0; s < 2; ++s)
      if (cached[s] == v) return rows[s].data();
    const int slot = cached[0] == keep ? 1 : 0;  // never overwrite the row the caller still holds
    const ptrdiff_t r = row(v);
    // the bases: stored row r, or stored column r when transposed
    const uint8_t* b0 = im.planes[0] + (transposed ? r * bpp : r * s0);
    const uint8_t* b1 = nullptr;
    const uint8_t* b2 = nullptr;
    if constexpr (kYuv) {
      b1 = im.planes[1] + (transposed ? (Format == EV_PIXEL_I420 ? r >> 1 : r & ~ptrdiff_t{1}) : (r >> 1) * s1);
      if constexpr (Format == EV_PIXEL_I420) b2 = im.planes[2] + (transposed ? r >> 1 : (r >> 1) * s2);
    }
    // local copies: the byte stores below may alias anything in memory, the captured variables included
    const size_t un = static_cast<size_t>(n);
    uint8_t *const pa = gathered.data(), *const pb = pa + 4 * un, *const ca = pb + 4 * un, *const cb = ca + 2 * un;
    const ptrdiff_t *const o0 = off.data(), *const o1 = o0 + 2 * un, *const o2 = o1 + 2 * un;
    if (paired) {
      const ptrdiff_t* x = pair.data();
      for (size_t i = 0; i < un; ++i) {
        if constexpr (kYuv) {
          uint8_t y[2];
          std::memcpy(y, b0 + x[i], 2);
          pa[i] = y[0], pb[i] = y[1];
          const ptrdiff_t l = x[i], r = x[i] + 1;  // the chroma of x and x + 1
          if constexpr (Format == EV_PIXEL_I420) {
            ca[2 * i] = b1[l >> 1], ca[2 * i + 1] = b2[l >> 1], cb[2 * i] = b1[r >> 1], cb[2 * i + 1] = b2[r >> 1];
          } else {
            std::memcpy(ca + 2 * i, b1 + (l & ~ptrdiff_t{1}), 2);
            std::memcpy(cb + 2 * i, b1 + (r & ~ptrdiff_t{1}), 2);
          }
        } else {
          uint8_t p[2 * bpp];
          std::memcpy(p, b0 + x[i] * bpp, 2 * bpp);
          std::memcpy(pa + 4 * i, p, bpp);
          std::memcpy(pb + 4 * i, p + bpp, bpp);
        }
      }
    } else {
      for (size_t i = 0; i < un; ++i) {
        const size_t j = 2 * i;
        if constexpr (kYuv) {
          pa[i] = b0[o0[j]], pb[i] = b0[o0[j + 1]];
          if constexpr (Format == EV_PIXEL_I420) {
            ca[j] = b1[o1[j]], ca[j + 1] = b2[o2[j]], cb[j] = b1[o1[j + 1]], cb[j + 1] = b2[o2[j + 1]];
          } else {
            std::memcpy(ca + j, b1 + o1[j], 2);
            std::memcpy(cb + j, b1 + o1[j + 1], 2);
          }
        } else {
          std::memcpy(pa + 4 * i, b0 + o0[j], bpp);
          std::memcpy(pb + 4 * i, b0 + o0[j + 1], bpp);
        }
      }
    }
    int16_t* h = rows[slot].data();
    const int16_t* q = wq.data();
    auto pass = [&](auto horizontal) {
      horizontal(pa, pb, ca, cb, q, q + n, q + 2 * n, q + 3 * n, n, coef, h, h + n, h + 2 * n);
    };
    if constexpr (Format == EV_PIXEL_NV21) {
      pass(horizontal_vu);
    } else if constexpr (kYuv) {
      pass(horizontal_uv);
    } else if constexpr (Format == EV_PIXEL_BGRA) {
      pass(horizontal_bgra);
    } else {
      pass(horizontal_rgb);
    }
    cached[slot] = v;
    return h;
  };
  for (size_t cy = 0; cy < un; ++cy) {
    const Tap& t = ty[cy];
    const int16_t* r0 = filtered(t.i0, -1);
    const int16_t* r1 = filtered(t.i1, t.i0);
    row_out(r0, r1, t.w0, t.w1, cy);
  }
}

// The crop's taps (sdk.preprocess's shorter-side resize and centre crop of the upright image), then the crop's rows
// through crop_pixels<format>.
template <typename Row>
void crop_rows(const ev_image& im, int short_side, int size, Row&& row_out) {
  check_image(im);
  const bool swap = im.rotation == 90 || im.rotation == 270;
  const int uw = swap ? im.height : im.width, uh = swap ? im.width : im.height;  // upright
  int nw = 0, nh = 0;
  resized_size(uw, uh, short_side, &nw, &nh);
  if (nw < size || nh < size)
    throw Error(EV_ERR_BAD_FRAME, "the resized image is smaller than the " + std::to_string(size) + " px crop");
  const int x0 = (nw - size) / 2, y0 = (nh - size) / 2;  // sdk.preprocess centre crop
  // no resize when the shorter side already is short_side (as sdk.preprocess): identity taps
  const bool same = nw == uw && nh == uh;
  auto identity = [&](int first) {
    std::vector<Tap> t(static_cast<size_t>(size));
    for (int k = 0; k < size; ++k) t[static_cast<size_t>(k)] = {first + k, first + k, 2048, 0};
    return t;
  };
  const std::vector<Tap> tx = same ? identity(x0) : taps(uw, nw, x0, size, true);
  const std::vector<Tap> ty = same ? identity(y0) : taps(uh, nh, y0, size, false);
  switch (im.format) {
    case EV_PIXEL_RGB: crop_pixels<EV_PIXEL_RGB>(im, tx, ty, size, row_out); break;
    case EV_PIXEL_RGBA: crop_pixels<EV_PIXEL_RGBA>(im, tx, ty, size, row_out); break;
    case EV_PIXEL_BGRA: crop_pixels<EV_PIXEL_BGRA>(im, tx, ty, size, row_out); break;
    case EV_PIXEL_NV12: crop_pixels<EV_PIXEL_NV12>(im, tx, ty, size, row_out); break;
    case EV_PIXEL_NV21: crop_pixels<EV_PIXEL_NV21>(im, tx, ty, size, row_out); break;
    default: crop_pixels<EV_PIXEL_I420>(im, tx, ty, size, row_out); break;
  }
}

}  // namespace

std::vector<uint8_t> image_to_input(const ev_image& im, int short_side, int size) {
  std::vector<uint8_t> out(static_cast<size_t>(size) * size * 3);
  const size_t row = static_cast<size_t>(size) * 3;
  crop_rows(im, short_side, size, [&](const int16_t* r0, const int16_t* r1, int w0, int w1, size_t cy) {
    vertical(r0, r1, w0, w1, size, out.data() + cy * row);
  });
  return out;
}

void image_to_values(const ev_image& im, int short_side, int size, const float mul[3], const float add[3],
                     bool planar, float* out) {
  const size_t n = static_cast<size_t>(size), plane = n * n;
  crop_rows(im, short_side, size, [&](const int16_t* r0, const int16_t* r1, int w0, int w1, size_t cy) {
    if (planar)
      vertical_planar(r0, r1, w0, w1, size, mul, add, plane, out + cy * n);
    else
      vertical_packed(r0, r1, w0, w1, size, mul, add, out + cy * n * 3);
  });
}

}  // namespace ev
