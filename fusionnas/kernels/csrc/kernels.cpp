// The seeds' transform operators as fused CPU kernels (see fusionnas_kernels.h).
//
// Everything is vectorised along pixels: an NCHW tensor holds each channel's pixels contiguously,
// so a strip of V pixels of all channels is a column of vectors, and a transform over channels
// is vector arithmetic between them, with no shuffles. A strip's channels (a few tens of KB) stay
// in L1/L2 while the whole layer runs on them: one read of the input, one write of the output.
// SIMD comes from the compiler's vector extensions; the width follows the target's flags.
#include "fusionnas_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "thread_pool.h"

namespace {

#if defined(__AVX512F__)
constexpr int V = 16;
constexpr const char* kSimd = "avx512";
#elif defined(__AVX2__)
constexpr int V = 8;
constexpr const char* kSimd = "avx2";
#elif defined(__AVX__)
constexpr int V = 8;
constexpr const char* kSimd = "avx";
#elif defined(__ARM_NEON)
constexpr int V = 4;
constexpr const char* kSimd = "neon";
#elif defined(__SSE2__)
constexpr int V = 4;
constexpr const char* kSimd = "sse2";
#else
constexpr int V = 4;
constexpr const char* kSimd = "generic";
#endif

typedef float vf __attribute__((vector_size(V * 4)));
typedef int32_t vi __attribute__((vector_size(V * 4)));
typedef float vf_unaligned __attribute__((vector_size(V * 4), aligned(4)));

inline vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
inline vf splat(float a) { return vf{} + a; }

inline vf load_partial(const float* p, int lanes) {
  if (lanes == V) return load(p);
  float tmp[V] = {};
  std::memcpy(tmp, p, sizeof(float) * lanes);
  return load(tmp);
}

inline void store_partial(float* p, vf v, int lanes) {
  if (lanes == V) return store(p, v);
  float tmp[V];
  store(tmp, v);
  std::memcpy(p, tmp, sizeof(float) * lanes);
}

inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline vf vabs(vf a) { return (vf)((vi)a & 0x7fffffff); }
inline vf copysign_of(vf magnitude, vf sign) { return (vf)((vi)magnitude | ((vi)sign & (int32_t)0x80000000)); }
inline float sum_lanes(vf v) {
  float s = 0;
  for (int l = 0; l < V; ++l) s += v[l];
  return s;
}

// tanh(a) for a >= 0: a P(a^2) / Q(a^2), a rational fitted here for the least maximum error on
// [0, 9] (iteratively reweighted least squares; 6e-7 in float32 arithmetic), 1 beyond. Eleven
// vector operations where exp-based forms take twenty: the threshold's tanh is the layer's
// largest cost, one per coefficient per pixel.
inline vf tanh_abs(vf a) {
  vf x = vmin(a, splat(9.0f));
  vf x2 = x * x;
  vf p = ((splat(1.0297885e-05f) * x2 + 0.0028406356f) * x2 + 0.12820302f) * x2 + 0.9999984f;
  vf q = (((splat(2.1104067e-07f) * x2 + 0.00022343054f) * x2 + 0.023356577f) * x2 + 0.46153075f) * x2 + 1.0f;
  return vmin(x * p / q, splat(1.0f));
}

// Smooth thresholding, tanh(u) * max(|u| - t, 0).
inline vf smooth_threshold(vf u, vf t) {
  vf a = vabs(u);
  return copysign_of(tanh_abs(a), u) * vmax(a - t, vf{});
}

// ---- scratch memory: per thread, 64-byte aligned, grown on demand -------------------------------

struct Scratch {
  float* data = nullptr;
  size_t size = 0;
  ~Scratch() { std::free(data); }
  float* get(size_t floats) {
    if (floats > size) {
      std::free(data);
      size = (floats + 1023) & ~size_t(1023);
      data = static_cast<float*>(std::aligned_alloc(64, size * sizeof(float)));
    }
    return data;
  }
};

float* scratch(size_t floats) {
  thread_local Scratch s;
  return s.get(floats);
}

int log2_of(int64_t n) {
  int k = 0;
  while ((int64_t(1) << k) < n) ++k;
  return k;
}

int64_t pow2_at_least(int64_t n) { return int64_t(1) << log2_of(std::max<int64_t>(n, 1)); }

// ---- strips of pixels ---------------------------------------------------------------------------
// A strip is W pixels of every channel, W a multiple of S = one 64-byte cache line of floats.
// Gathering a strip reads whole lines, several per row, however far apart the channels lie: at
// 4 KB or more apart every row is another page, and a strip of one line per row spends most of
// its time in TLB misses. An "element" is one channel's W pixels: W / V vectors.
constexpr int S = V >= 16 ? V : 16;
constexpr int E = S / V;
constexpr int64_t kStripBytes = 256 << 10;  // a strip's buffers stay in L2 (half of it, on most CPUs)

// Pixels per strip for `rows` buffered channels: as many as fit the budget, at most 256, split
// evenly over the strips the pixels need (196 pixels in strips of 40, not 48 + 48 + 48 + 48 + 4),
// whole vectors (whole lines where `unit` is S), at least a cache line.
int64_t strip_width(int64_t rows, int64_t pixels, int64_t unit = V) {
  int64_t most = std::max<int64_t>(S, std::min<int64_t>(kStripBytes / (4 * std::max<int64_t>(rows, 1)), 256) / S * S);
  int64_t strips = (pixels + most - 1) / most;
  int64_t even = (pixels + strips - 1) / strips;
  return std::max<int64_t>(S, (even + unit - 1) / unit * unit);
}

// Lanes of vector e of a strip with `lanes` valid pixels.
inline int lanes_of(int64_t lanes, int64_t e) {
  return static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(V, lanes - e * V)));
}

// Columns [0, lanes) of a (rows, pixels) plane into a (rows, W) buffer, zero-filled.
inline void gather(float* buf, const float* src, int64_t rows, int64_t pixels, int64_t lanes, int64_t W) {
  for (int64_t c = 0; c < rows; ++c)
    for (int64_t e = 0; e < W / V; ++e)
      store(buf + c * W + e * V, load_partial(src + c * pixels + e * V, lanes_of(lanes, e)));
}

// The valid lanes of a (rows, W) buffer into a (rows, pixels) plane.
inline void scatter(float* dst, const float* buf, int64_t rows, int64_t pixels, int64_t lanes, int64_t W) {
  for (int64_t c = 0; c < rows; ++c)
    for (int64_t e = 0; e * V < lanes; ++e) store_partial(dst + c * pixels + e * V, load(buf + c * W + e * V), lanes_of(lanes, e));
}

// ---- the FWHT over elements ---------------------------------------------------------------------
// A pass applies R = 2^L levels of butterflies to elements h apart in registers, so 1024
// elements take 4 passes over the buffer, not 10. `width` vectors per element, each its own column.

template <int L>
void radix_pass(float* b, int64_t n, int64_t h, int64_t stride, int width) {
  constexpr int R = 1 << L;
  const int64_t span = h * R;
  for (int64_t base = 0; base < n; base += span) {
    for (int64_t j = base; j < base + h; ++j) {
      for (int e = 0; e < width; ++e) {
        float* col = b + j * stride + e * V;
        vf r[R];
        for (int m = 0; m < R; ++m) r[m] = load(col + m * h * stride);
        for (int s = 1; s < R; s <<= 1)
          for (int m = 0; m < R; ++m)
            if (!(m & s)) {
              vf a = r[m], c = r[m + s];
              r[m] = a + c;
              r[m + s] = a - c;
            }
        for (int m = 0; m < R; ++m) store(col + m * h * stride, r[m]);
      }
    }
  }
}

// The FWHT across n elements (n a power of two) of `width` vectors, `stride` floats apart.
void fwht_elements(float* b, int64_t n, int64_t stride, int width) {
  int levels = log2_of(n);
  int64_t h = 1;
  while (levels >= 3) {
    radix_pass<3>(b, n, h, stride, width);
    h <<= 3;
    levels -= 3;
  }
  if (levels == 2) radix_pass<2>(b, n, h, stride, width);
  if (levels == 1) radix_pass<1>(b, n, h, stride, width);
}

// Butterflies between lanes h apart inside every vector (h < V): x * sign + x[lane ^ h].
struct LaneLevels {
  vi partner[8];
  vf sign[8];
  LaneLevels() {
    for (int k = 0; (1 << k) < V; ++k) {
      int h = 1 << k;
      for (int l = 0; l < V; ++l) {
        partner[k][l] = l ^ h;
        sign[k][l] = (l & h) ? -1.0f : 1.0f;
      }
    }
  }
};
const LaneLevels kLanes;

inline vf lane_levels(vf x, int levels) {
  for (int k = 0; k < levels; ++k) {
#if defined(__clang__)
    vf p;
    for (int l = 0; l < V; ++l) p[l] = x[kLanes.partner[k][l]];
#else
    vf p = __builtin_shuffle(x, kLanes.partner[k]);
#endif
    x = x * kLanes.sign[k] + p;
  }
  return x;
}

// FWHT of one contiguous row of n >= V floats from src into row (which may be src): the levels
// inside vectors on the way in, then the levels between them in cache.
void fwht_row(const float* src, float* row, int64_t n) {
  const int in_lanes = log2_of(V);
  for (int64_t i = 0; i < n; i += V) store(row + i, lane_levels(load(src + i), in_lanes));
  if (n > V) fwht_elements(row, n / V, V, 1);
}

void fwht_row_scalar(float* row, int64_t n) {
  for (int64_t h = 1; h < n; h <<= 1)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        float a = row[j], c = row[j + h];
        row[j] = a + c;
        row[j + h] = a - c;
      }
}

// ---- WHT channel fusion -------------------------------------------------------------------------

struct WhtShape {
  int64_t c_in, c_out, pixels, n, m_in, m_out;
  WhtShape(int64_t c_in_, int64_t c_out_, int64_t pixels_, int64_t n_)
      : c_in(c_in_), c_out(c_out_), pixels(pixels_), n(n_), m_in(pow2_at_least(c_in_)), m_out(pow2_at_least(c_out_)) {}
};

// One strip of W pixels from p0: the forward transform only over the m_in channels that the zero
// padding leaves non-zero (H_n = H_{n/m} (x) H_m, so z[c] = (H_m x)[c mod m]); the inverse only
// for the kept m_out outputs (the n / m_out blocks of s summed, then one m_out-point transform).
void wht_strip(const WhtShape& s, const float* x, float* y, int64_t p0, int64_t W, const float* coef,
               const float* thr, const float* out_scale, const float* out_shift, int act) {
  float* z = scratch((s.m_in + s.m_out) * W);
  float* acc = z + s.m_in * W;
  const int64_t lanes = std::min(W, s.pixels - p0), nv = W / V;
  gather(z, x + p0, s.c_in, s.pixels, lanes, W);
  std::fill(z + s.c_in * W, z + s.m_in * W, 0.0f);
  fwht_elements(z, s.m_in, W, nv);
  const int64_t in_mask = s.m_in - 1, out_mask = s.m_out - 1;
  for (int64_t c = 0; c < s.n; ++c) {
    const float* zc = z + (c & in_mask) * W;
    float* ac = acc + (c & out_mask) * W;
    const vf t = splat(thr[c]);
    const float k = coef[c];
    if (c < s.m_out)
      for (int64_t e = 0; e < nv; ++e) store(ac + e * V, smooth_threshold(load(zc + e * V) * k, t));
    else
      for (int64_t e = 0; e < nv; ++e) store(ac + e * V, load(ac + e * V) + smooth_threshold(load(zc + e * V) * k, t));
  }
  fwht_elements(acc, s.m_out, W, nv);
  for (int64_t c = 0; c < s.c_out; ++c) {
    float* row = acc + c * W;
    for (int64_t e = 0; e < nv; ++e) {
      vf v = load(row + e * V) * out_scale[c];
      if (out_shift) v += out_shift[c];
      if (act == 1) v = vmin(vmax(v, vf{}), splat(6.0f));
      store(row + e * V, v);
    }
  }
  scatter(y + p0, acc, s.c_out, s.pixels, lanes, W);
}

// Gradients for one strip; accumulates d/dcoef and d/dthr per lane into gcoef, gthr (n vectors).
void wht_strip_backward(const WhtShape& s, const float* x, const float* gy, float* gx, int64_t p0, int64_t W,
                        const float* coef, const float* thr, const float* out_scale, float* gcoef, float* gthr) {
  float* z = scratch((2 * s.m_in + s.m_out) * W);
  float* gz = z + s.m_in * W;
  float* gs = gz + s.m_in * W;
  const int64_t lanes = std::min(W, s.pixels - p0), nv = W / V;
  gather(z, x + p0, s.c_in, s.pixels, lanes, W);
  std::fill(z + s.c_in * W, z + s.m_in * W, 0.0f);
  fwht_elements(z, s.m_in, W, nv);
  gather(gs, gy + p0, s.c_out, s.pixels, lanes, W);
  for (int64_t c = 0; c < s.c_out; ++c)
    for (int64_t e = 0; e < nv; ++e) store(gs + c * W + e * V, load(gs + c * W + e * V) * out_scale[c]);
  std::fill(gs + s.c_out * W, gs + s.m_out * W, 0.0f);
  fwht_elements(gs, s.m_out, W, nv);  // d loss / d s[c] = gs[c mod m_out]
  std::fill(gz, gz + s.m_in * W, 0.0f);
  const int64_t in_mask = s.m_in - 1, out_mask = s.m_out - 1;
  for (int64_t c = 0; c < s.n; ++c) {
    const float k = coef[c];
    vf sum_coef = {}, sum_thr = {};
    for (int64_t e = 0; e < nv; ++e) {
      const int64_t zi = (c & in_mask) * W + e * V;
      vf zc = load(z + zi);
      vf u = zc * k;
      vf a = vabs(u);
      vf t = tanh_abs(a);
      vf r = a - thr[c];
      vf g = load(gs + (c & out_mask) * W + e * V);
      vf kept = (vf)(r > 0.0f);  // all bits set where |u| > thr
      vf t_kept = (vf)((vi)t & (vi)kept);
      vf du = g * ((1.0f - t * t) * vmax(r, vf{}) + t_kept);
      sum_coef += du * zc;
      sum_thr -= g * copysign_of(t_kept, u);
      store(gz + zi, load(gz + zi) + du * k);
    }
    if (gcoef) store(gcoef + c * V, load(gcoef + c * V) + sum_coef);
    if (gthr) store(gthr + c * V, load(gthr + c * V) + sum_thr);
  }
  if (gx) {
    fwht_elements(gz, s.m_in, W, nv);
    scatter(gx + p0, gz, s.c_in, s.pixels, lanes, W);
  }
}

// ---- butterfly ----------------------------------------------------------------------------------

struct Stage {
  int64_t groups, k_out, k_in;
  const float* w;
};

// Outputs [o, o + K) of group g, columns [col, col + E V) of W-wide elements:
// out[g k_out + o] = sum_i W[g, o, i] in[i G + g], K * E accumulators in registers.
template <int K>
inline void butterfly_outputs(const Stage& st, const float* in, float* out, int64_t g, int64_t o, int64_t col,
                              int64_t W) {
  const int64_t G = st.groups, ki = st.k_in;
  const float* w = st.w + (g * st.k_out + o) * ki;
  vf acc[K][E] = {};
  for (int64_t i = 0; i < ki; ++i) {
    const float* src = in + (i * G + g) * W + col;
    vf v[E];
    for (int e = 0; e < E; ++e) v[e] = load(src + e * V);
    for (int k = 0; k < K; ++k) {
      const float wk = w[k * ki + i];
      for (int e = 0; e < E; ++e) acc[k][e] += v[e] * wk;
    }
  }
  for (int k = 0; k < K; ++k)
    for (int e = 0; e < E; ++e) store(out + (g * st.k_out + o + k) * W + col + e * V, acc[k][e]);
}

void butterfly_stage(const Stage& st, const float* in, float* out, int64_t W) {
  constexpr int K = 12 / E;  // 12 accumulators
  for (int64_t col = 0; col < W; col += S)
    for (int64_t g = 0; g < st.groups; ++g) {
      int64_t o = 0;
      for (; o + K <= st.k_out; o += K) butterfly_outputs<K>(st, in, out, g, o, col, W);
      for (; o < st.k_out; ++o) butterfly_outputs<1>(st, in, out, g, o, col, W);
    }
}

// ---- 2D WHT over tiles --------------------------------------------------------------------------

// Butterflies between columns h < tw apart inside each tw-wide tile of a row of `width` floats
// (width a multiple of V and of tw).
void row_tile_levels(float* row, int64_t width, int64_t tw) {
  const int in_lanes = log2_of(std::min<int64_t>(tw, V));
  for (int64_t i = 0; i < width; i += V) store(row + i, lane_levels(load(row + i), in_lanes));
  if (tw > V)
    for (int64_t t = 0; t < width; t += tw) fwht_elements(row + t, tw / V, V, 1);
}

// The separable 2D FWHT of every th x tw tile of a (th, width) band.
void band_transform(float* band, int64_t th, int64_t width, int64_t tw) {
  if (th > 1) fwht_elements(band, th, width, width / V);  // rows are the elements: one pass for the band
  for (int64_t r = 0; r < th; ++r) row_tile_levels(band + r * width, width, tw);
}

}  // namespace

extern "C" {

const char* fn_describe(void) {
  static char text[64];
  std::snprintf(text, sizeof text, "fusionnas-kernels %d %s (%d floats)", fn_abi_version(), kSimd, V);
  return text;
}

int fn_abi_version(void) { return 2; }

void fn_fwht(const float* x, float* y, int64_t lead, int64_t n, int64_t trail, int threads) {
  if (trail == 1) {
    fn::parallel_for(lead, threads, 2 * lead * n, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r) {
        float* row = y + r * n;
        if (n >= V) {
          fwht_row(x + r * n, row, n);
        } else {
          if (x != y) std::memcpy(row, x + r * n, sizeof(float) * n);
          fwht_row_scalar(row, n);
        }
      }
    });
    return;
  }
  const int64_t W = strip_width(n, trail), strips = (trail + W - 1) / W;
  fn::parallel_for(lead * strips, threads, 2 * lead * n * trail, [&](int64_t begin, int64_t end, int) {
    float* buf = scratch(n * W);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t l = item / strips, p0 = (item % strips) * W, lanes = std::min(W, trail - p0);
      gather(buf, x + l * n * trail + p0, n, trail, lanes, W);
      fwht_elements(buf, n, W, W / V);
      scatter(y + l * n * trail + p0, buf, n, trail, lanes, W);
    }
  });
}

void fn_wht_pointwise(const float* x, float* y, int64_t batch, int64_t c_in, int64_t c_out, int64_t pixels,
                      int64_t n, const float* coef, const float* thr, const float* out_scale,
                      const float* out_shift, int act, int threads) {
  const WhtShape s(c_in, c_out, pixels, n);
  const int64_t W = strip_width(s.m_in + s.m_out, pixels), strips = (pixels + W - 1) / W;
  const int64_t work = batch * pixels * (c_in + c_out + 4 * n);  // ~ the thresholds' share
  fn::parallel_for(batch * strips, threads, work, [&](int64_t begin, int64_t end, int) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / strips, p0 = (item % strips) * W;
      wht_strip(s, x + b * c_in * pixels, y + b * c_out * pixels, p0, W, coef, thr, out_scale, out_shift, act);
    }
  });
}

void fn_wht_pointwise_backward(const float* x, const float* grad_y, float* grad_x, float* grad_coef,
                               float* grad_thr, int64_t batch, int64_t c_in, int64_t c_out, int64_t pixels,
                               int64_t n, const float* coef, const float* thr, const float* out_scale,
                               int threads) {
  const WhtShape s(c_in, c_out, pixels, n);
  const int64_t W = strip_width(2 * s.m_in + s.m_out, pixels), strips = (pixels + W - 1) / W;
  const int64_t items = batch * strips;
  const int64_t work = batch * pixels * (2 * c_in + c_out + 8 * n);
  const int workers = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({std::max(threads, 1), items, work / fn::kMinWorkPerThread})));
  const bool params = grad_coef || grad_thr;
  // Per worker, per lane sums: reduced once at the end, so no thread writes another's lines.
  std::vector<float> sums(params ? size_t(workers) * 2 * n * V : 0, 0.0f);
  fn::parallel_for(items, workers, work, [&](int64_t begin, int64_t end, int worker) {
    float* gcoef = params ? sums.data() + size_t(worker) * 2 * n * V : nullptr;
    float* gthr = params ? gcoef + n * V : nullptr;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / strips, p0 = (item % strips) * W;
      wht_strip_backward(s, x + b * c_in * pixels, grad_y + b * c_out * pixels,
                         grad_x ? grad_x + b * c_in * pixels : nullptr, p0, W, coef, thr, out_scale, gcoef, gthr);
    }
  });
  for (int which = 0; which < 2; ++which) {
    float* out = which == 0 ? grad_coef : grad_thr;
    if (!out) continue;
    for (int64_t c = 0; c < n; ++c) {
      vf total = {};
      for (int w = 0; w < workers; ++w) total += load(sums.data() + (size_t(w) * 2 + which) * n * V + c * V);
      out[c] = sum_lanes(total);
    }
  }
}

void fn_butterfly(const float* x, float* y, int64_t batch, int64_t c_in, int64_t pixels, int64_t width_in,
                  int64_t c_out, int stages, const int64_t* shape, const float* const* weights,
                  const float* out_scale, const float* out_shift, int act, int threads) {
  std::vector<Stage> st(stages);
  int64_t widest = width_in;
  for (int s = 0; s < stages; ++s) {
    st[s] = {shape[3 * s], shape[3 * s + 1], shape[3 * s + 2], weights[s]};
    widest = std::max(widest, st[s].groups * st[s].k_out);
  }
  const int64_t W = strip_width(2 * widest, pixels, S), strips = (pixels + W - 1) / W;  // stages work in lines
  int64_t macs = 0;
  for (const Stage& stage : st) macs += stage.groups * stage.k_out * stage.k_in;
  const int64_t work = batch * pixels * (c_in + c_out + macs / 4);
  fn::parallel_for(batch * strips, threads, work, [&](int64_t begin, int64_t end, int) {
    float* a = scratch(2 * widest * W);
    float* b = a + widest * W;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t img = item / strips, p0 = (item % strips) * W, lanes = std::min(W, pixels - p0);
      gather(a, x + img * c_in * pixels + p0, c_in, pixels, lanes, W);
      std::fill(a + c_in * W, a + width_in * W, 0.0f);
      float *in = a, *out = b;
      for (int s = 0; s < stages; ++s) {
        butterfly_stage(st[s], in, out, W);
        std::swap(in, out);
      }
      if (out_scale || out_shift || act)
        for (int64_t c = 0; c < c_out; ++c)
          for (int64_t e = 0; e < W / V; ++e) {
            vf v = load(in + c * W + e * V);
            if (out_scale) v *= out_scale[c];
            if (out_shift) v += out_shift[c];
            if (act == 1) v = vmin(vmax(v, vf{}), splat(6.0f));
            store(in + c * W + e * V, v);
          }
      scatter(y + img * c_out * pixels + p0, in, c_out, pixels, lanes, W);
    }
  });
}

// Stride 2 averages 2 x 2 windows of each t_h x t_w tile's output, and that is the same layer at
// half resolution: the coefficients (p, q) with p and q even are the (t_h/2) x (t_w/2) transform of
// the map's 2 x 2 sums (H_2k's rows 2a are H_k's row a, each entry twice), and only they reach the
// averaged output (rows 2i and 2i+1 of H_2k cancel in every odd column). So a stride-2 layer is the
// stride-1 layer with half tiles, the even coefficients and the same out_norm on the 2 x 2 sums:
// a quarter of the thresholds and transforms, none of them wasted on pixels the pooling averages.
void fn_wht2d(const float* x, float* y, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t th,
              int64_t tw, int stride, const float* coef, const float* thr, int shared, float out_norm,
              int threads) {
  const int64_t out_h = (h + stride - 1) / stride, out_w = (w + stride - 1) / stride;
  const int64_t step = stride == 2 ? 2 : 1;  // the coefficients used: every one, or the even ones
  const int64_t kh = th / step, kw = tw / step;
  const int64_t bands = (out_h + kh - 1) / kh;
  const int64_t width = ((out_w + kw - 1) / kw * kw + V - 1) / V * V;  // whole tiles, whole vectors
  const int64_t pattern = std::max<int64_t>(kw, V);  // a row's coefficients repeat every `pattern` floats
  fn::parallel_for(batch * channels, threads, batch * channels * h * w * 8, [&](int64_t begin, int64_t end, int) {
    float* band = scratch(kh * width + 2 * kh * pattern + (step == 2 ? out_h * out_w : 0));
    float* cv = band + kh * width;
    float* tv = cv + kh * pattern;
    float* sums = tv + kh * pattern;
    int64_t loaded = -1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item % channels, param = shared ? 0 : c;
      if (param != loaded) {  // this channel's coefficients laid out along a row
        for (int64_t p = 0; p < kh; ++p)
          for (int64_t q = 0; q < pattern; ++q) {
            const int64_t at = (param * th + p * step) * tw + (q % kw) * step;
            cv[p * pattern + q] = coef[at];
            tv[p * pattern + q] = thr[at];
          }
        loaded = param;
      }
      const float* src = x + item * h * w;
      if (step == 2) {  // the 2 x 2 sums, zero beyond the map
        for (int64_t oy = 0; oy < out_h; ++oy)
          for (int64_t ox = 0; ox < out_w; ++ox) {
            float total = 0;
            for (int64_t iy = 2 * oy; iy < std::min(2 * oy + 2, h); ++iy)
              for (int64_t ix = 2 * ox; ix < std::min(2 * ox + 2, w); ++ix) total += src[iy * w + ix];
            sums[oy * out_w + ox] = total;
          }
        src = sums;
      }
      float* dst = y + item * out_h * out_w;
      for (int64_t bnd = 0; bnd < bands; ++bnd) {
        for (int64_t r = 0; r < kh; ++r) {
          float* row = band + r * width;
          const int64_t iy = bnd * kh + r;
          int64_t filled = 0;
          if (iy < out_h) {
            std::memcpy(row, src + iy * out_w, sizeof(float) * out_w);
            filled = out_w;
          }
          std::fill(row + filled, row + width, 0.0f);
        }
        band_transform(band, kh, width, kw);
        for (int64_t r = 0; r < kh; ++r)
          for (int64_t k = 0; k < width; k += V) {
            const int64_t q = k % pattern;
            vf u = load(band + r * width + k) * load(cv + r * pattern + q);
            store(band + r * width + k, smooth_threshold(u, load(tv + r * pattern + q)));
          }
        band_transform(band, kh, width, kw);
        for (int64_t r = 0; r < kh && bnd * kh + r < out_h; ++r) {
          float* out_row = dst + (bnd * kh + r) * out_w;
          const float* row = band + r * width;
          int64_t k = 0;
          for (; k + V <= out_w; k += V) store(out_row + k, load(row + k) * out_norm);
          for (; k < out_w; ++k) out_row[k] = row[k] * out_norm;
        }
      }
    }
  });
}

}  // extern "C"
