#include "image.hpp"

#include <algorithm>
#include <cmath>
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

// Reads stored pixel (x, y) as RGB; one instantiation per format, so that the inner loops have no switch.
template <int Format>
struct Reader {
  const ev_image& im;
  int s0, s1, s2;
  Coefficients k;

  explicit Reader(const ev_image& image)
      : im(image),
        s0(stride_of(image, 0, image.width * bytes_per_pixel(Format))),
        s1(stride_of(image, 1, Format == EV_PIXEL_I420 ? image.width / 2 : image.width)),
        s2(stride_of(image, 2, image.width / 2)),
        k(image.full_range ? kFull : kVideo) {}

  // Pointers to the rows of stored row y that its pixels read.
  struct Row {
    const uint8_t *p0, *p1, *p2;
  };
  inline Row row(int y) const {
    const size_t c = static_cast<size_t>(y >> 1);
    return {im.planes[0] + static_cast<size_t>(y) * s0, im.planes[1] ? im.planes[1] + c * s1 : nullptr,
            im.planes[2] ? im.planes[2] + c * s2 : nullptr};
  }

  inline void operator()(const Row& r, int x, int out[3]) const {
    if constexpr (Format == EV_PIXEL_RGB || Format == EV_PIXEL_RGBA) {
      const uint8_t* p = r.p0 + (Format == EV_PIXEL_RGB ? 3 : 4) * x;
      out[0] = p[0], out[1] = p[1], out[2] = p[2];
    } else if constexpr (Format == EV_PIXEL_BGRA) {
      const uint8_t* p = r.p0 + 4 * x;
      out[0] = p[2], out[1] = p[1], out[2] = p[0];
    } else {
      int U, V;
      if constexpr (Format == EV_PIXEL_I420) {
        U = r.p1[x >> 1];
        V = r.p2[x >> 1];
      } else {
        const uint8_t* c = r.p1 + (x & ~1);
        U = Format == EV_PIXEL_NV12 ? c[0] : c[1];
        V = Format == EV_PIXEL_NV12 ? c[1] : c[0];
      }
      U -= 128;
      V -= 128;
      const int L = (r.p0[x] - k.y_off) * k.y_mul + kHalf;
      out[0] = clip8((L + k.rv * V) >> kShift);
      out[1] = clip8((L - k.gu * U - k.gv * V) >> kShift);
      out[2] = clip8((L + k.bu * U) >> kShift);
    }
  }

  // YUV only: stored columns lo..hi (lo even) of a row as RGB bytes, the same arithmetic as operator() in one
  // sequential pass, the chroma terms once per pair of columns.
  inline void span(const Row& r, int lo, int hi, uint8_t* out) const {
    for (int x = lo; x <= hi; x += 2) {
      int U, V;
      if constexpr (Format == EV_PIXEL_I420) {
        U = r.p1[x >> 1];
        V = r.p2[x >> 1];
      } else {
        U = Format == EV_PIXEL_NV12 ? r.p1[x] : r.p1[x + 1];
        V = Format == EV_PIXEL_NV12 ? r.p1[x + 1] : r.p1[x];
      }
      const int red = k.rv * (V - 128), green = k.gu * (U - 128) + k.gv * (V - 128), blue = k.bu * (U - 128);
      for (int i = 0; i < 2 && x + i <= hi; ++i, out += 3) {
        const int L = (r.p0[x + i] - k.y_off) * k.y_mul + kHalf;
        out[0] = clip8((L + red) >> kShift);
        out[1] = clip8((L - green) >> kShift);
        out[2] = clip8((L + blue) >> kShift);
      }
    }
  }
};

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

// The crop's pixels for one format: taps (upright coordinates) are mapped to stored rows and columns once; each
// output row interpolates two horizontally filtered source rows (OpenCV's two passes, in its fixed point).
template <int Format>
void crop_pixels(const ev_image& im, const std::vector<Tap>& tx, const std::vector<Tap>& ty, int size,
                 uint8_t* out) {
  const Reader<Format> read(im);
  const bool transposed = im.rotation == 90 || im.rotation == 270;
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
  const size_t n = static_cast<size_t>(size);
  std::vector<int> c0(n), c1(n);
  for (size_t k = 0; k < n; ++k) c0[k] = col(tx[k].i0), c1[k] = col(tx[k].i1);
  std::vector<int> rows[2] = {std::vector<int>(n * 3), std::vector<int>(n * 3)};
  // A YUV row read along its storage (rotation 0 / 180) whose taps' columns span at most two per output pixel (a
  // shorter side scaled down at most 2x, or up) is converted once over that span, then filtered as RGB: each tap
  // converts two pixels, so this converts fewer (2.2x faster for a crop without resize; a larger downscale would
  // convert columns no tap reads).
  constexpr bool kYuv = Format == EV_PIXEL_NV12 || Format == EV_PIXEL_NV21 || Format == EV_PIXEL_I420;
  int lo = 0, hi = -1;
  if (kYuv && !transposed) {
    lo = std::min(*std::min_element(c0.begin(), c0.end()), *std::min_element(c1.begin(), c1.end())) & ~1;
    hi = std::max(*std::max_element(c0.begin(), c0.end()), *std::max_element(c1.begin(), c1.end()));
  }
  const bool by_span = hi >= lo && static_cast<size_t>(hi - lo + 1) <= 2 * n;
  std::vector<uint8_t> converted(by_span ? static_cast<size_t>(hi - lo + 1) * 3 : 0);
  int cached[2] = {-1, -1};  // the upright rows rows[0] / rows[1] hold
  auto filtered = [&](int v, int keep) -> const int* {
    for (int s = 0; s < 2; ++s)
      if (cached[s] == v) return rows[s].data();
    const int slot = cached[0] == keep ? 1 : 0;  // never overwrite the row the caller still holds
    int* dst = rows[slot].data();
    const int r = row(v);
    int a[3], b[3];
    if (transposed) {  // the row is a stored column: x fixed, y along the crop
      for (size_t k = 0; k < n; ++k, dst += 3) {
        read(read.row(c0[k]), r, a), read(read.row(c1[k]), r, b);
        const Tap& h = tx[k];
        for (int c = 0; c < 3; ++c) dst[c] = a[c] * h.w0 + b[c] * h.w1;
      }
    } else if (by_span) {
      if constexpr (kYuv) read.span(read.row(r), lo, hi, converted.data());
      for (size_t k = 0; k < n; ++k, dst += 3) {
        const uint8_t* p = converted.data() + 3 * (c0[k] - lo);
        const uint8_t* q = converted.data() + 3 * (c1[k] - lo);
        const Tap& h = tx[k];
        for (int c = 0; c < 3; ++c) dst[c] = p[c] * h.w0 + q[c] * h.w1;
      }
    } else {
      const auto stored = read.row(r);
      for (size_t k = 0; k < n; ++k, dst += 3) {
        read(stored, c0[k], a), read(stored, c1[k], b);
        const Tap& h = tx[k];
        for (int c = 0; c < 3; ++c) dst[c] = a[c] * h.w0 + b[c] * h.w1;
      }
    }
    cached[slot] = v;
    return rows[slot].data();
  };
  for (size_t cy = 0; cy < n; ++cy) {
    const Tap& v = ty[cy];
    const int* r0 = filtered(v.i0, -1);
    const int* r1 = filtered(v.i1, v.i0);
    uint8_t* dst = out + cy * n * 3;
    for (size_t k = 0; k < n * 3; ++k)  // OpenCV's vectorised vertical pass (x86 SSE2/AVX2, ARM NEON)
      dst[k] = clip8((((v.w0 * (r0[k] >> 4)) >> 16) + ((v.w1 * (r1[k] >> 4)) >> 16) + 2) >> 2);
  }
}

}  // namespace

std::vector<uint8_t> image_to_input(const ev_image& im, int short_side, int size) {
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
  std::vector<uint8_t> out(static_cast<size_t>(size) * size * 3);
  switch (im.format) {
    case EV_PIXEL_RGB: crop_pixels<EV_PIXEL_RGB>(im, tx, ty, size, out.data()); break;
    case EV_PIXEL_RGBA: crop_pixels<EV_PIXEL_RGBA>(im, tx, ty, size, out.data()); break;
    case EV_PIXEL_BGRA: crop_pixels<EV_PIXEL_BGRA>(im, tx, ty, size, out.data()); break;
    case EV_PIXEL_NV12: crop_pixels<EV_PIXEL_NV12>(im, tx, ty, size, out.data()); break;
    case EV_PIXEL_NV21: crop_pixels<EV_PIXEL_NV21>(im, tx, ty, size, out.data()); break;
    default: crop_pixels<EV_PIXEL_I420>(im, tx, ty, size, out.data()); break;
  }
  return out;
}

}  // namespace ev
