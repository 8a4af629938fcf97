/* fusionnas native kernels: the seeds' transform operators as fused CPU kernels.
 *
 * One C ABI for every binding: the torch custom operators load it with ctypes
 * (fusionnas/kernels/_native.py), the OpenVINO extension links the same source.
 * All tensors are contiguous float32 in NCHW order (pixels = H * W, last).
 * `threads` is how many threads a call may use (the caller's own included);
 * 1 runs on the calling thread only.
 */
#ifndef FUSIONNAS_KERNELS_H
#define FUSIONNAS_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FN_API __attribute__((visibility("default")))

/* "fusionnas-kernels <abi> <simd>", e.g. "fusionnas-kernels 1 avx2 (8 floats)". */
FN_API const char* fn_describe(void);
/* Bumped whenever a signature below changes; the bindings refuse another. */
FN_API int fn_abi_version(void);

/* Unnormalised FWHT (Sylvester order, = x @ scipy.linalg.hadamard(n)) of the middle
 * axis of a (lead, n, trail) array; n a power of two. y may be x. */
FN_API void fn_fwht(const float* x, float* y, int64_t lead, int64_t n, int64_t trail, int threads);

/* WHT channel fusion, (batch, c_in, pixels) -> (batch, c_out, pixels), per pixel:
 *   z = H_n pad(x)           zero-padded to n channels (n a power of two >= c_in, c_out)
 *   u = coef * z             coef[n], the layer's scale times 1/sqrt(n)
 *   s = tanh(u) * max(|u| - thr, 0)     thr[n] >= 0
 *   y = act(out_scale * crop(H_n s) + out_shift)   out_scale[c_out] includes 1/sqrt(n)
 * out_shift may be NULL (zero); act: 0 none, 1 ReLU6. */
FN_API void fn_wht_pointwise(const float* x, float* y, int64_t batch, int64_t c_in, int64_t c_out,
                             int64_t pixels, int64_t n, const float* coef, const float* thr,
                             const float* out_scale, const float* out_shift, int act, int threads);

/* Gradients of fn_wht_pointwise with act = 0 and out_shift = NULL, given grad_y:
 * grad_x (batch, c_in, pixels); grad_coef[n] and grad_thr[n] are overwritten with
 * the sums over the batch (grad_thr is d/d thr, thr the non-negative threshold).
 * Any of the three outputs may be NULL. */
FN_API void fn_wht_pointwise_backward(const float* x, const float* grad_y, float* grad_x, float* grad_coef,
                                      float* grad_thr, int64_t batch, int64_t c_in, int64_t c_out,
                                      int64_t pixels, int64_t n, const float* coef, const float* thr,
                                      const float* out_scale, int threads);

/* Butterfly (BFT) channel fusion, (batch, c_in, pixels) -> (batch, c_out, pixels).
 * The input is zero-padded to width_in channels; stage s (shape[3s..3s+2] = G, k_out, k_in,
 * weights[s] a contiguous (G, k_out, k_in) array) maps channel i*G + g of its input
 * to channel g*k_out + o of its output:  out[g*k_out + o] = sum_i W[g, o, i] in[i*G + g].
 * The last stage's output is cropped to c_out, then y = act(out_scale * y + out_shift)
 * (either may be NULL: 1 and 0); act: 0 none, 1 ReLU6. */
FN_API void fn_butterfly(const float* x, float* y, int64_t batch, int64_t c_in, int64_t pixels,
                         int64_t width_in, int64_t c_out, int stages, const int64_t* shape,
                         const float* const* weights, const float* out_scale, const float* out_shift,
                         int act, int threads);

/* 2D WHT over tiles of the spatial dims (WHT2d, HadamardDepthwise), (batch, channels, h, w)
 * -> (batch, channels, ceil(h / stride), ceil(w / stride)). Each th x tw tile of the map,
 * zero-padded to whole tiles: z = H_th tile H_tw; u = coef * z; s = tanh(u) * max(|u| - thr, 0);
 * t = out_norm * H_th s H_tw; stride 2 averages 2 x 2 windows of t; the result is cropped.
 * coef and thr are (channels, th, tw) arrays, or (1, th, tw) when shared != 0; th, tw powers
 * of two, and >= 2 when stride is 2. */
FN_API void fn_wht2d(const float* x, float* y, int64_t batch, int64_t channels, int64_t h, int64_t w,
                     int64_t th, int64_t tw, int stride, const float* coef, const float* thr, int shared,
                     float out_norm, int threads);

#ifdef __cplusplus
}
#endif

#endif
