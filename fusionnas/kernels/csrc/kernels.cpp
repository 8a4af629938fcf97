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

// exp(x) for x <= 0: x = k ln2 + r with |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial
// (relative error < 2e-7), 2^k through the exponent bits.
inline vf exp_nonpositive(vf x) {
  x = vmax(x, splat(-87.0f));
  const vf round_magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  vf k = (x * 1.44269504088896341f + round_magic) - round_magic;
  vf r = x - k * 0.693145751953125f - k * 1.42860682030941723e-6f;
  vf p = splat(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
  return p * (vf)bits;
}

// tanh(|u|) = (1 - e) / (1 + e) with e = exp(-2|u|); absolute error ~1e-7.
inline vf tanh_abs(vf a) {
  vf e = exp_nonpositive(a * -2.0f);
  return (1.0f - e) / (1.0f + e);
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
// A strip is S pixels of every channel, S = one 64-byte cache line of floats, so that gathering a
// strip reads whole lines however far apart the channels lie (at 4 KB apart they would otherwise
// fight over a few cache sets). An "element" is one channel's S pixels: E vectors.
constexpr int S = V >= 16 ? V : 16;
constexpr int E = S / V;

inline int lanes_at(int64_t p0, int64_t pixels) { return static_cast<int>(std::min<int64_t>(S, pixels - p0)); }

// Lanes of vector e of a strip with `lanes` valid pixels.
inline int lanes_of(int lanes, int e) { return std::max(0, std::min(V, lanes - e * V)); }

// Columns [p0, p0 + lanes) of a (rows, pixels) plane into a (rows, S) buffer, zero-filled.
inline void gather(float* buf, const float* src, int64_t rows, int64_t pixels, int64_t p0, int lanes) {
  for (int64_t c = 0; c < rows; ++c)
    for (int e = 0; e < E; ++e) store(buf + c * S + e * V, load_partial(src + c * pixels + p0 + e * V, lanes_of(lanes, e)));
}

inline void store_strip(float* dst, vf v, int lanes, int e) {
  int k = lanes_of(lanes, e);
  if (k > 0) store_partial(dst + e * V, v, k);
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
void fwht_elements(float* b, int64_t n, int64_t stride, int width = E) {
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

// FWHT of one contiguous row of n >= V floats in place.
void fwht_row(float* row, int64_t n) {
  const int in_lanes = log2_of(V);
  for (int64_t i = 0; i < n; i += V) store(row + i, lane_levels(load(row + i), in_lanes));
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
  int64_t c_in, c_out, pixels, n, m_in, m_out, strips;
  WhtShape(int64_t c_in_, int64_t c_out_, int64_t pixels_, int64_t n_)
      : c_in(c_in_), c_out(c_out_), pixels(pixels_), n(n_), m_in(pow2_at_least(c_in_)),
        m_out(pow2_at_least(c_out_)), strips((pixels_ + S - 1) / S) {}
};

// One strip: the forward transform only over the m_in channels that the zero padding leaves
// non-zero (H_n = H_{n/m} (x) H_m, so z[c] = (H_m x)[c mod m]); the inverse only for the kept
// m_out outputs (the n / m_out blocks of s summed, then one m_out-point transform).
void wht_strip(const WhtShape& s, const float* x, float* y, int64_t p0, const float* coef, const float* thr,
               const float* out_scale, const float* out_shift, int act) {
  float* z = scratch((s.m_in + s.m_out) * S);
  float* acc = z + s.m_in * S;
  const int lanes = lanes_at(p0, s.pixels);
  gather(z, x + p0, s.c_in, s.pixels, 0, lanes);
  std::fill(z + s.c_in * S, z + s.m_in * S, 0.0f);
  fwht_elements(z, s.m_in, S);
  const int64_t in_mask = s.m_in - 1, out_mask = s.m_out - 1;
  for (int64_t c = 0; c < s.n; ++c) {
    const float* zc = z + (c & in_mask) * S;
    float* ac = acc + (c & out_mask) * S;
    const vf t = splat(thr[c]);
    for (int e = 0; e < E; ++e) {
      vf v = smooth_threshold(load(zc + e * V) * coef[c], t);
      store(ac + e * V, c < s.m_out ? v : load(ac + e * V) + v);
    }
  }
  fwht_elements(acc, s.m_out, S);
  for (int64_t c = 0; c < s.c_out; ++c) {
    for (int e = 0; e < E; ++e) {
      vf v = load(acc + c * S + e * V) * out_scale[c];
      if (out_shift) v += out_shift[c];
      if (act == 1) v = vmin(vmax(v, vf{}), splat(6.0f));
      store_strip(y + c * s.pixels + p0, v, lanes, e);
    }
  }
}

// Gradients for one strip; accumulates d/dcoef and d/dthr per lane into gcoef, gthr (n elements).
void wht_strip_backward(const WhtShape& s, const float* x, const float* gy, float* gx, int64_t p0,
                        const float* coef, const float* thr, const float* out_scale, float* gcoef, float* gthr) {
  float* z = scratch((2 * s.m_in + s.m_out) * S);
  float* gz = z + s.m_in * S;
  float* gs = gz + s.m_in * S;
  const int lanes = lanes_at(p0, s.pixels);
  gather(z, x + p0, s.c_in, s.pixels, 0, lanes);
  std::fill(z + s.c_in * S, z + s.m_in * S, 0.0f);
  fwht_elements(z, s.m_in, S);
  gather(gs, gy + p0, s.c_out, s.pixels, 0, lanes);
  for (int64_t c = 0; c < s.c_out; ++c)
    for (int e = 0; e < E; ++e) store(gs + c * S + e * V, load(gs + c * S + e * V) * out_scale[c]);
  std::fill(gs + s.c_out * S, gs + s.m_out * S, 0.0f);
  fwht_elements(gs, s.m_out, S);  // d loss / d s[c] = gs[c mod m_out]
  std::fill(gz, gz + s.m_in * S, 0.0f);
  const int64_t in_mask = s.m_in - 1, out_mask = s.m_out - 1;
  for (int64_t c = 0; c < s.n; ++c) {
    for (int e = 0; e < E; ++e) {
      const int64_t zi = (c & in_mask) * S + e * V, ci = c * S + e * V;
      vf zc = load(z + zi);
      vf u = zc * coef[c];
      vf a = vabs(u);
      vf t = tanh_abs(a);
      vf r = a - thr[c];
      vf g = load(gs + (c & out_mask) * S + e * V);
      vf kept = (vf)(r > 0.0f);  // all bits set where |u| > thr
      vf t_kept = (vf)((vi)t & (vi)kept);
      vf du = g * ((1.0f - t * t) * vmax(r, vf{}) + t_kept);
      if (gcoef) store(gcoef + ci, load(gcoef + ci) + du * zc);
      if (gthr) store(gthr + ci, load(gthr + ci) - g * copysign_of(t_kept, u));
      store(gz + zi, load(gz + zi) + du * coef[c]);
    }
  }
  if (!gx) return;
  fwht_elements(gz, s.m_in, S);
  for (int64_t c = 0; c < s.c_in; ++c)
    for (int e = 0; e < E; ++e) store_strip(gx + c * s.pixels + p0, load(gz + c * S + e * V), lanes, e);
}

// ---- butterfly ----------------------------------------------------------------------------------

struct Stage {
  int64_t groups, k_out, k_in;
  const float* w;
};

// Outputs [o, o + K) of group g: out[g k_out + o] = sum_i W[g, o, i] in[i G + g], in registers.
template <int K>
inline void butterfly_outputs(const Stage& st, const float* in, float* out, int64_t g, int64_t o) {
  const int64_t G = st.groups, ki = st.k_in;
  const float* w = st.w + (g * st.k_out + o) * ki;
  vf acc[K][E] = {};
  for (int64_t i = 0; i < ki; ++i) {
    const float* col = in + (i * G + g) * S;
    vf v[E];
    for (int e = 0; e < E; ++e) v[e] = load(col + e * V);
    for (int k = 0; k < K; ++k) {
      const float wk = w[k * ki + i];
      for (int e = 0; e < E; ++e) acc[k][e] += v[e] * wk;
    }
  }
  for (int k = 0; k < K; ++k)
    for (int e = 0; e < E; ++e) store(out + (g * st.k_out + o + k) * S + e * V, acc[k][e]);
}

void butterfly_stage(const Stage& st, const float* in, float* out) {
  constexpr int K = 12 / E;  // outputs in registers: 12 accumulators
  for (int64_t g = 0; g < st.groups; ++g) {
    int64_t o = 0;
    for (; o + K <= st.k_out; o += K) butterfly_outputs<K>(st, in, out, g, o);
    for (; o < st.k_out; ++o) butterfly_outputs<1>(st, in, out, g, o);
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
  if (th > 1)
    for (int64_t k = 0; k < width; k += V) fwht_elements(band + k, th, width, 1);
  for (int64_t r = 0; r < th; ++r) row_tile_levels(band + r * width, width, tw);
}

}  // namespace

extern "C" {

const char* fn_describe(void) {
  static char text[64];
  std::snprintf(text, sizeof text, "fusionnas-kernels %d %s (%d floats)", fn_abi_version(), kSimd, V);
  return text;
}

int fn_abi_version(void) { return 1; }

void fn_fwht(const float* x, float* y, int64_t lead, int64_t n, int64_t trail, int threads) {
  if (trail == 1) {
    fn::parallel_for(lead, threads, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r) {
        float* row = y + r * n;
        if (x != y) std::memcpy(row, x + r * n, sizeof(float) * n);
        if (n >= V)
          fwht_row(row, n);
        else
          fwht_row_scalar(row, n);
      }
    });
    return;
  }
  const int64_t strips = (trail + S - 1) / S;
  fn::parallel_for(lead * strips, threads, [&](int64_t begin, int64_t end, int) {
    float* buf = scratch(n * S);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t l = item / strips, p0 = (item % strips) * S;
      const int lanes = lanes_at(p0, trail);
      gather(buf, x + l * n * trail, n, trail, p0, lanes);
      fwht_elements(buf, n, S);
      float* dst = y + l * n * trail + p0;
      for (int64_t c = 0; c < n; ++c)
        for (int e = 0; e < E; ++e) store_strip(dst + c * trail, load(buf + c * S + e * V), lanes, e);
    }
  });
}

void fn_wht_pointwise(const float* x, float* y, int64_t batch, int64_t c_in, int64_t c_out, int64_t pixels,
                      int64_t n, const float* coef, const float* thr, const float* out_scale,
                      const float* out_shift, int act, int threads) {
  const WhtShape s(c_in, c_out, pixels, n);
  fn::parallel_for(batch * s.strips, threads, [&](int64_t begin, int64_t end, int) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / s.strips, p0 = (item % s.strips) * S;
      wht_strip(s, x + b * c_in * pixels, y + b * c_out * pixels, p0, coef, thr, out_scale, out_shift, act);
    }
  });
}

void fn_wht_pointwise_backward(const float* x, const float* grad_y, float* grad_x, float* grad_coef,
                               float* grad_thr, int64_t batch, int64_t c_in, int64_t c_out, int64_t pixels,
                               int64_t n, const float* coef, const float* thr, const float* out_scale,
                               int threads) {
  const WhtShape s(c_in, c_out, pixels, n);
  const int64_t items = batch * s.strips;
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(std::max(threads, 1), items)));
  const bool params = grad_coef || grad_thr;
  // Per worker, per lane sums: reduced once at the end, so no thread writes another's lines.
  std::vector<float> sums(params ? size_t(workers) * 2 * n * S : 0, 0.0f);
  fn::parallel_for(items, workers, [&](int64_t begin, int64_t end, int worker) {
    float* gcoef = params ? sums.data() + size_t(worker) * 2 * n * S : nullptr;
    float* gthr = params ? gcoef + n * S : nullptr;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / s.strips, p0 = (item % s.strips) * S;
      wht_strip_backward(s, x + b * c_in * pixels, grad_y + b * c_out * pixels,
                         grad_x ? grad_x + b * c_in * pixels : nullptr, p0, coef, thr, out_scale, gcoef, gthr);
    }
  });
  for (int which = 0; which < 2; ++which) {
    float* out = which == 0 ? grad_coef : grad_thr;
    if (!out) continue;
    for (int64_t c = 0; c < n; ++c) {
      vf total = {};
      for (int w = 0; w < workers; ++w)
        for (int e = 0; e < E; ++e) total += load(sums.data() + (size_t(w) * 2 + which) * n * S + c * S + e * V);
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
  const int64_t strips = (pixels + S - 1) / S;
  fn::parallel_for(batch * strips, threads, [&](int64_t begin, int64_t end, int) {
    float* a = scratch(2 * widest * S);
    float* b = a + widest * S;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t img = item / strips, p0 = (item % strips) * S;
      const int lanes = lanes_at(p0, pixels);
      gather(a, x + img * c_in * pixels, c_in, pixels, p0, lanes);
      std::fill(a + c_in * S, a + width_in * S, 0.0f);
      float *in = a, *out = b;
      for (int s = 0; s < stages; ++s) {
        butterfly_stage(st[s], in, out);
        std::swap(in, out);
      }
      float* dst = y + img * c_out * pixels + p0;
      for (int64_t c = 0; c < c_out; ++c)
        for (int e = 0; e < E; ++e) {
          vf v = load(in + c * S + e * V);
          if (out_scale) v *= out_scale[c];
          if (out_shift) v += out_shift[c];
          if (act == 1) v = vmin(vmax(v, vf{}), splat(6.0f));
          store_strip(dst + c * pixels, v, lanes, e);
        }
    }
  });
}

void fn_wht2d(const float* x, float* y, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t th,
              int64_t tw, int stride, const float* coef, const float* thr, int shared, float out_norm,
              int threads) {
  const int64_t bands = (h + th - 1) / th;
  const int64_t tiled = ((w + tw - 1) / tw) * tw;
  const int64_t width = ((tiled + V - 1) / V) * V;  // whole tiles, whole vectors (tw | V or V | tw)
  const int64_t out_h = (h + stride - 1) / stride, out_w = (w + stride - 1) / stride;
  const int64_t pattern = std::max<int64_t>(tw, V);  // a row's coefficients repeat every `pattern` floats
  fn::parallel_for(batch * channels, threads, [&](int64_t begin, int64_t end, int) {
    float* band = scratch(th * width + 2 * th * pattern);
    float* cv = band + th * width;
    float* tv = cv + th * pattern;
    int64_t loaded = -1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item % channels, param = shared ? 0 : c;
      if (param != loaded) {  // this channel's coefficients laid out along a row
        for (int64_t p = 0; p < th; ++p)
          for (int64_t q = 0; q < pattern; ++q) {
            cv[p * pattern + q] = coef[(param * th + p) * tw + q % tw];
            tv[p * pattern + q] = thr[(param * th + p) * tw + q % tw];
          }
        loaded = param;
      }
      const float* src = x + item * h * w;
      float* dst = y + item * out_h * out_w;
      for (int64_t bnd = 0; bnd < bands; ++bnd) {
        for (int64_t r = 0; r < th; ++r) {
          float* row = band + r * width;
          const int64_t iy = bnd * th + r;
          int64_t filled = 0;
          if (iy < h) {
            std::memcpy(row, src + iy * w, sizeof(float) * w);
            filled = w;
          }
          std::fill(row + filled, row + width, 0.0f);
        }
        band_transform(band, th, width, tw);
        for (int64_t r = 0; r < th; ++r)
          for (int64_t k = 0; k < width; k += V) {
            const int64_t q = k % pattern;
            vf u = load(band + r * width + k) * load(cv + r * pattern + q);
            store(band + r * width + k, smooth_threshold(u, load(tv + r * pattern + q)));
          }
        band_transform(band, th, width, tw);
        if (stride == 1) {
          for (int64_t r = 0; r < th && bnd * th + r < h; ++r) {
            float* out_row = dst + (bnd * th + r) * w;
            const float* row = band + r * width;
            int64_t k = 0;
            for (; k + V <= w; k += V) store(out_row + k, load(row + k) * out_norm);
            for (; k < w; ++k) out_row[k] = row[k] * out_norm;
          }
        } else {
          const float quarter = 0.25f * out_norm;
          for (int64_t r = 0; r + 1 < th; r += 2) {
            const int64_t oy = (bnd * th + r) / 2;
            if (oy >= out_h) break;
            const float *r0 = band + r * width, *r1 = r0 + width;
            float* out_row = dst + oy * out_w;
            for (int64_t ox = 0; ox < out_w; ++ox)
              out_row[ox] = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) * quarter;
          }
        }
      }
    }
  });
}

}  // extern "C"
