/*
 * adapter/rot.c - the public RoAd kernels: variants, coefficients (forward and chain rule),
 * forward / mixed / backward dispatch, and merge / unmerge on the 2x2 block structure.
 *
 * Row kernels live in kernels_*.c; this file validates arguments, picks the implementation
 * and splits rows across OpenMP threads. Merge and unmerge never build R: each output pair
 * (a, b) of W is a 2-term combination of rows a and b, computed in double and rounded once,
 * so merge + unmerge is O(out*in) and more accurate than PEFT's dense R @ W.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "adapter/kernels.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/cpu.h"
#include "core/threads.h"

/* Below this many elements a kernel call stays on one thread: the OpenMP fork costs more
 * than the work (about 64K floats = 256 KiB, half an L2). */
#define ROAD_PAR_MIN_ELEMS (1 << 16)

/* A 2x2 block whose condition number exceeds 1/FLT_EPSILON (about 8.4e6) is singular in
 * float32: unmerging it would return no correct digits, so merge and unmerge refuse it. */
#define ROAD_MAX_BLOCK_CONDITION (1.0 / FLT_EPSILON)

/* ---- variants -------------------------------------------------------------------------- */

const char *road_variant_name(road_variant v) {
    switch (v) {
    case ROAD_VARIANT_1: return "road_1";
    case ROAD_VARIANT_2: return "road_2";
    case ROAD_VARIANT_4: return "road_4";
    }
    return "?";
}

road_status road_variant_parse(const char *s, road_variant *out) {
    static const road_variant all[] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, road_variant_name(all[i])) == 0) {
            *out = all[i];
            return ROAD_OK;
        }
    }
    return road__error(ROAD_ERR_CONFIG, "invalid variant '%s'; choose road_1, road_2 or road_4",
                       s ? s : "(null)");
}

int64_t road_param_count(road_variant v, int64_t out) {
    switch (v) {
    case ROAD_VARIANT_1: return out / 2;
    case ROAD_VARIANT_2: return out;
    case ROAD_VARIANT_4: return out * 2;
    }
    return 0;
}

road_status road_check_shape(road_variant v, int64_t group_size, int64_t out, const char *layer) {
    const char *pre = layer ? layer : "";
    const char *sep = layer ? ": " : "";
    if (road_param_count(v, 2) == 0)
        return road__error(ROAD_ERR_CONFIG,
                           "%s%sinvalid variant %d; choose road_1, road_2 or road_4", pre, sep,
                           (int)v);
    if (group_size <= 0 || group_size % 2 != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "%s%sgroup_size must be a positive even number (features are rotated "
                           "in pairs), got %lld",
                           pre, sep, (long long)group_size);
    if (out <= 0)
        return road__error(ROAD_ERR_SHAPE, "%s%sout_features must be positive, got %lld", pre, sep,
                           (long long)out);
    if (out % group_size != 0) {
        int64_t best = 0;
        for (int64_t d = group_size < out ? group_size : out; d >= 2; d--) {
            if (d % 2 == 0 && out % d == 0) {
                best = d;
                break;
            }
        }
        if (best == 0)
            return road__error(ROAD_ERR_SHAPE,
                               "%s%sout_features %lld is odd, so RoAd cannot pair its features; "
                               "leave this layer out of target_modules",
                               pre, sep, (long long)out);
        return road__error(ROAD_ERR_SHAPE,
                           "%s%sout_features %lld is not divisible by group_size %lld; choose a "
                           "group_size that divides it (for example %lld)",
                           pre, sep, (long long)out, (long long)group_size, (long long)best);
    }
    return ROAD_OK;
}

static road_status check_rot(const road_rot *r, const char *fn) {
    if (!r || !r->c1 || !r->c2)
        return road__error(ROAD_ERR_INVALID_ARG, "%s: rotation or its coefficients are NULL", fn);
    road_status s = road_check_shape(ROAD_VARIANT_2, r->group_size, r->out, NULL);
    if (s != ROAD_OK) road__error_prefix("%s", fn);
    return s;
}

static road_status check_block(const char *fn, int64_t rows, const void *p, int64_t ld,
                               int64_t width, const char *what) {
    if (rows < 0)
        return road__error(ROAD_ERR_SHAPE, "%s: rows must be >= 0, got %lld", fn, (long long)rows);
    if (rows > 0 && !p) return road__error(ROAD_ERR_INVALID_ARG, "%s: %s is NULL", fn, what);
    if (ld < width)
        return road__error(ROAD_ERR_SHAPE,
                           "%s: row stride of %s (%lld) is smaller than its width %lld", fn, what,
                           (long long)ld, (long long)width);
    return ROAD_OK;
}

/* ---- coefficients ---------------------------------------------------------------------- */

road_status road_coeffs_compute(road_variant v, int32_t group_size, int64_t out,
                                const float *theta, const float *alpha, float *c1, float *c2) {
    road_status s = road_check_shape(v, group_size, out, NULL);
    if (s != ROAD_OK) return s;
    if (!theta || !alpha || !c1 || !c2)
        return road__error(ROAD_ERR_INVALID_ARG, "road_coeffs_compute: NULL array");
    const int64_t gs = group_size, h = gs / 2;
    switch (v) {
    case ROAD_VARIANT_1: /* parameter g*h + j serves both elements of pair (g*gs + j, +h) */
        for (int64_t g0 = 0, p = 0; g0 < out; g0 += gs) {
            for (int64_t j = 0; j < h; j++, p++) {
                float f = alpha[p] * cosf(theta[p]), sn = alpha[p] * sinf(theta[p]);
                c1[g0 + j] = c1[g0 + j + h] = f;
                c2[g0 + j] = c2[g0 + j + h] = sn;
            }
        }
        break;
    case ROAD_VARIANT_2:
        for (int64_t i = 0; i < out; i++) {
            c1[i] = alpha[i] * cosf(theta[i]);
            c2[i] = alpha[i] * sinf(theta[i]);
        }
        break;
    case ROAD_VARIANT_4: /* per group: gs entries for the cos part, then gs for the sin part */
        for (int64_t g0 = 0; g0 < out; g0 += gs) {
            const float *tc = theta + 2 * g0, *ts = tc + gs, *ac = alpha + 2 * g0, *as = ac + gs;
            for (int64_t k = 0; k < gs; k++) {
                c1[g0 + k] = ac[k] * cosf(tc[k]);
                c2[g0 + k] = as[k] * sinf(ts[k]);
            }
        }
        break;
    }
    return ROAD_OK;
}

/* c1 = alpha cos(theta), c2 = alpha sin(theta):
 * dtheta = -dc1 alpha sin(theta) + dc2 alpha cos(theta), dalpha = dc1 cos(theta) + dc2 sin(theta).
 * Computed in double from float inputs, rounded once. */
road_status road_coeffs_backward(road_variant v, int32_t group_size, int64_t out,
                                 const float *theta, const float *alpha, const float *dc1,
                                 const float *dc2, float *dtheta, float *dalpha) {
    road_status s = road_check_shape(v, group_size, out, NULL);
    if (s != ROAD_OK) return s;
    if (!theta || !alpha || !dc1 || !dc2 || !dtheta || !dalpha)
        return road__error(ROAD_ERR_INVALID_ARG, "road_coeffs_backward: NULL array");
    const int64_t gs = group_size, h = gs / 2;
    switch (v) {
    case ROAD_VARIANT_1:
        for (int64_t g0 = 0, p = 0; g0 < out; g0 += gs) {
            for (int64_t j = 0; j < h; j++, p++) {
                double d1 = (double)dc1[g0 + j] + dc1[g0 + j + h];
                double d2 = (double)dc2[g0 + j] + dc2[g0 + j + h];
                double cs = cos(theta[p]), sn = sin(theta[p]);
                dtheta[p] += (float)(alpha[p] * (d2 * cs - d1 * sn));
                dalpha[p] += (float)(d1 * cs + d2 * sn);
            }
        }
        break;
    case ROAD_VARIANT_2:
        for (int64_t i = 0; i < out; i++) {
            double cs = cos(theta[i]), sn = sin(theta[i]);
            dtheta[i] += (float)(alpha[i] * ((double)dc2[i] * cs - (double)dc1[i] * sn));
            dalpha[i] += (float)((double)dc1[i] * cs + (double)dc2[i] * sn);
        }
        break;
    case ROAD_VARIANT_4:
        for (int64_t g0 = 0; g0 < out; g0 += gs) {
            for (int64_t k = 0; k < gs; k++) {
                int64_t qc = 2 * g0 + k, qs = qc + gs, f = g0 + k;
                double cc = cos(theta[qc]), sc = sin(theta[qc]);
                double cs = cos(theta[qs]), ss = sin(theta[qs]);
                dtheta[qc] += (float)(-(double)dc1[f] * alpha[qc] * sc);
                dalpha[qc] += (float)((double)dc1[f] * cc);
                dtheta[qs] += (float)((double)dc2[f] * alpha[qs] * cs);
                dalpha[qs] += (float)((double)dc2[f] * ss);
            }
        }
        break;
    }
    return ROAD_OK;
}

/* ---- implementation choice ------------------------------------------------------------- */

/* Per thread, so a test can pin one implementation without affecting other threads. */
static _Thread_local road_kernel_impl tls_impl = ROAD_KERNEL_AUTO;

road_kernel_impl road_kernel_active(void) {
#ifdef ROAD_HAVE_AVX2_KERNELS
    if (road__cpu_has_avx2_fma()) return ROAD_KERNEL_AVX2;
#endif
    return ROAD_KERNEL_GENERIC;
}

const char *road_kernel_name(road_kernel_impl impl) {
    switch (impl) {
    case ROAD_KERNEL_AUTO: return "auto";
    case ROAD_KERNEL_REFERENCE: return "reference";
    case ROAD_KERNEL_GENERIC: return "generic";
    case ROAD_KERNEL_AVX2: return "avx2";
    }
    return "?";
}

road_status road_kernel_select(road_kernel_impl impl) {
    switch (impl) {
    case ROAD_KERNEL_AUTO:
    case ROAD_KERNEL_REFERENCE:
    case ROAD_KERNEL_GENERIC: tls_impl = impl; return ROAD_OK;
    case ROAD_KERNEL_AVX2:
#ifdef ROAD_HAVE_AVX2_KERNELS
        if (road__cpu_has_avx2_fma()) {
            tls_impl = impl;
            return ROAD_OK;
        }
#endif
        return road__error(ROAD_ERR_UNSUPPORTED, "the avx2 kernels need a CPU with AVX2 and FMA");
    }
    return road__error(ROAD_ERR_INVALID_ARG, "unknown kernel implementation %d", (int)impl);
}

const road_kernel_ops *road__kernels_current(void) {
    road_kernel_impl impl = tls_impl == ROAD_KERNEL_AUTO ? road_kernel_active() : tls_impl;
    switch (impl) {
    case ROAD_KERNEL_REFERENCE:
        return &road__kernels_reference;
#ifdef ROAD_HAVE_AVX2_KERNELS
    case ROAD_KERNEL_AVX2:
        return &road__kernels_avx2;
#endif
    default:
        return &road__kernels_generic;
    }
}

static int threads_for(const road_kernel_ops *k, int64_t rows, int64_t width) {
#ifdef _OPENMP
    if (k == &road__kernels_reference || rows < 2 || rows * width < ROAD_PAR_MIN_ELEMS) return 1;
    int nt = omp_get_max_threads();
    return nt < rows ? nt : (int)rows;
#else
    (void)k, (void)rows, (void)width;
    return 1;
#endif
}

/* ---- forward --------------------------------------------------------------------------- */

road_status road_rot_forward(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    road_status s = check_rot(r, "road_rot_forward");
    if (s == ROAD_OK) s = check_block("road_rot_forward", rows, y, ld, r->out, "y");
    if (s != ROAD_OK) return s;
    const road_kernel_ops *k = road__kernels_current();
    int nt = threads_for(k, rows, r->out);
    if (nt <= 1) {
        k->forward(r, rows, y, ld);
        return ROAD_OK;
    }
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        k->forward(r, r1 - r0, y + r0 * ld, ld);
    }
    return ROAD_OK;
}

road_status road_rot_forward_mixed(const road_rot *const *rots, int32_t n_rots,
                                   const int32_t *slot, int64_t rows, float *y, int64_t ld) {
    if (n_rots < 0 || (n_rots > 0 && !rots) || (rows > 0 && !slot))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_rot_forward_mixed: NULL or negative argument");
    int64_t out = -1;
    for (int32_t i = 0; i < n_rots; i++) {
        road_status s = check_rot(rots[i], "road_rot_forward_mixed");
        if (s != ROAD_OK) return s;
        if (out >= 0 && rots[i]->out != out)
            return road__error(ROAD_ERR_SHAPE,
                               "road_rot_forward_mixed: adapter %d has %lld features, adapter 0 "
                               "has %lld; all must match the layer",
                               (int)i, (long long)rots[i]->out, (long long)out);
        out = rots[i]->out;
    }
    for (int64_t i = 0; i < rows; i++) {
        if (slot[i] >= n_rots)
            return road__error(ROAD_ERR_INVALID_ARG,
                               "road_rot_forward_mixed: row %lld uses adapter slot %d, but only "
                               "%d adapters were given",
                               (long long)i, (int)slot[i], (int)n_rots);
    }
    if (out < 0) return ROAD_OK; /* no adapters: every row passes through */
    road_status s = check_block("road_rot_forward_mixed", rows, y, ld, out, "y");
    if (s != ROAD_OK) return s;
    const road_kernel_ops *k = road__kernels_current();
    int nt = threads_for(k, rows, out);
    /* Each thread takes a contiguous range of rows and calls the kernel once per run of rows
     * that share an adapter (a sequence's tokens are contiguous, so runs are long). */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        while (r0 < r1) {
            int64_t e = r0 + 1;
            while (e < r1 && slot[e] == slot[r0]) e++;
            if (slot[r0] >= 0) k->forward(rots[slot[r0]], e - r0, y + r0 * ld, ld);
            r0 = e;
        }
    }
    return ROAD_OK;
}

/* ---- backward -------------------------------------------------------------------------- */

road_status road_rot_backward(const road_rot *r, int64_t rows, const float *x, int64_t ldx,
                              const float *dy, int64_t lddy, float *dx, int64_t lddx, float *dc1,
                              float *dc2) {
    const char *fn = "road_rot_backward";
    road_status s = check_rot(r, fn);
    if (s == ROAD_OK) s = check_block(fn, rows, dy, lddy, r->out, "dy");
    if (s == ROAD_OK && dx) s = check_block(fn, rows, dx, lddx, r->out, "dx");
    if (s != ROAD_OK) return s;
    if ((dc1 == NULL) != (dc2 == NULL))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: pass both dc1 and dc2, or neither", fn);
    if (dc1) {
        s = check_block(fn, rows, x, ldx, r->out, "x");
        if (s != ROAD_OK) return s;
    }
    if (rows == 0) return ROAD_OK;
    const road_kernel_ops *k = road__kernels_current();
    const int64_t D = r->out;
    int nt = threads_for(k, rows, D);
    double *acc = NULL;
    if (dc1) {
        acc = road__calloc((size_t)nt * 2 * (size_t)D, sizeof(double));
        if (!acc) return ROAD_ERR_NO_MEMORY;
    }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        double *a1 = acc ? acc + (size_t)t * 2 * D : NULL;
        k->backward(r, r1 - r0, x ? x + r0 * ldx : NULL, ldx, dy + r0 * lddy, lddy,
                    dx ? dx + r0 * lddx : NULL, lddx, a1, a1 ? a1 + D : NULL);
    }
    if (acc) {
        for (int64_t i = 0; i < D; i++) {
            double s1 = 0.0, s2 = 0.0;
            for (int t = 0; t < nt; t++) {
                s1 += acc[(size_t)t * 2 * D + i];
                s2 += acc[(size_t)t * 2 * D + D + i];
            }
            dc1[i] += (float)s1;
            dc2[i] += (float)s2;
        }
        road__free(acc);
    }
    return ROAD_OK;
}

/* ---- merge / unmerge ------------------------------------------------------------------- */

/* Condition number of the block [[c1a, -c2a], [c2b, c1b]] (ratio of its singular values). */
static double block_condition(double c1a, double c2a, double c1b, double c2b) {
    double det = c1a * c1b + c2a * c2b;
    double fro = c1a * c1a + c2a * c2a + c1b * c1b + c2b * c2b;
    if (!isfinite(det) || !isfinite(fro)) return NAN;
    if (det == 0.0) return INFINITY;
    double disc = fro * fro - 4.0 * det * det;
    double big = 0.5 * (fro + sqrt(disc > 0.0 ? disc : 0.0));
    return big / fabs(det);
}

double road_rot_block_condition(const road_rot *r) {
    if (check_rot(r, "road_rot_block_condition") != ROAD_OK) return NAN;
    const int64_t gs = r->group_size, h = gs / 2;
    double worst = 1.0;
    for (int64_t g0 = 0; g0 < r->out; g0 += gs) {
        for (int64_t j = 0; j < h; j++) {
            int64_t a = g0 + j, b = a + h;
            double c = block_condition(r->c1[a], r->c2[a], r->c1[b], r->c2[b]);
            if (isnan(c)) return NAN;
            if (c > worst) worst = c;
        }
    }
    return worst;
}

/* Refuse non-finite or numerically singular blocks before touching W. */
road_status road__rot_check_blocks(const road_rot *r, const char *fn) {
    const int64_t gs = r->group_size, h = gs / 2;
    for (int64_t g0 = 0; g0 < r->out; g0 += gs) {
        for (int64_t j = 0; j < h; j++) {
            int64_t a = g0 + j, b = a + h;
            double c = block_condition(r->c1[a], r->c2[a], r->c1[b], r->c2[b]);
            if (isnan(c))
                return road__error(ROAD_ERR_NUMERIC,
                                   "%s: the rotation of features (%lld, %lld) is not finite "
                                   "(alpha*cos = %g, alpha*sin = %g); the adapter is broken, "
                                   "weights left unchanged",
                                   fn, (long long)a, (long long)b, (double)r->c1[a],
                                   (double)r->c2[a]);
            if (!(c <= ROAD_MAX_BLOCK_CONDITION))
                return road__error(ROAD_ERR_NUMERIC,
                                   "%s: the 2x2 block of features (%lld, %lld) is singular "
                                   "(condition number %.3g > %.3g; is alpha near 0?); merging it "
                                   "could not be undone, weights left unchanged",
                                   fn, (long long)a, (long long)b, c, ROAD_MAX_BLOCK_CONDITION);
        }
    }
    return ROAD_OK;
}

static road_status check_weights(const road_rot *r, int64_t in, const float *w, int64_t ldw,
                                 const char *fn) {
    road_status s = check_rot(r, fn);
    if (s != ROAD_OK) return s;
    if (in <= 0)
        return road__error(ROAD_ERR_SHAPE, "%s: in_features must be positive, got %lld", fn,
                           (long long)in);
    s = check_block(fn, r->out, w, ldw, in, "W");
    if (s != ROAD_OK) return s;
    return road__rot_check_blocks(r, fn);
}

/* Apply the 2x2 map [[m11, m12], [m21, m22]] to rows (a, b) of W and entries (a, b) of bias,
 * for every pair; m is built per pair by `coef`. */
typedef void (*pair_coef_fn)(const road_rot *r, int64_t a, int64_t b, double m[4]);

static void apply_pairs(const road_rot *r, int64_t in, float *w, int64_t ldw, float *bias,
                        pair_coef_fn coef) {
    const int64_t gs = r->group_size, h = gs / 2, npairs = r->out / 2;
#pragma omp parallel for schedule(static) if (r->out * in >= ROAD_PAR_MIN_ELEMS)
    for (int64_t p = 0; p < npairs; p++) {
        int64_t a = (p / h) * gs + p % h, b = a + h;
        double m[4];
        coef(r, a, b, m);
        float *restrict wa = w + a * ldw;
        float *restrict wb = w + b * ldw;
        for (int64_t k = 0; k < in; k++) {
            double va = wa[k], vb = wb[k];
            wa[k] = (float)(m[0] * va + m[1] * vb);
            wb[k] = (float)(m[2] * va + m[3] * vb);
        }
        if (bias) {
            double va = bias[a], vb = bias[b];
            bias[a] = (float)(m[0] * va + m[1] * vb);
            bias[b] = (float)(m[2] * va + m[3] * vb);
        }
    }
}

static void coef_forward(const road_rot *r, int64_t a, int64_t b, double m[4]) {
    m[0] = r->c1[a];
    m[1] = -(double)r->c2[a];
    m[2] = r->c2[b];
    m[3] = r->c1[b];
}

static void coef_inverse(const road_rot *r, int64_t a, int64_t b, double m[4]) {
    double c1a = r->c1[a], c2a = r->c2[a], c1b = r->c1[b], c2b = r->c2[b];
    double det = c1a * c1b + c2a * c2b;
    m[0] = c1b / det;
    m[1] = c2a / det;
    m[2] = -c2b / det;
    m[3] = c1a / det;
}

road_status road_rot_merge(const road_rot *r, int64_t in, float *w, int64_t ldw, float *b) {
    road_status s = check_weights(r, in, w, ldw, "merge");
    if (s != ROAD_OK) return s;
    apply_pairs(r, in, w, ldw, b, coef_forward);
    return ROAD_OK;
}

road_status road_rot_unmerge(const road_rot *r, int64_t in, float *w, int64_t ldw, float *b) {
    road_status s = check_weights(r, in, w, ldw, "unmerge");
    if (s != ROAD_OK) return s;
    apply_pairs(r, in, w, ldw, b, coef_inverse);
    return ROAD_OK;
}

road_status road_rot_dense(const road_rot *r, float *dense) {
    road_status s = check_rot(r, "road_rot_dense");
    if (s != ROAD_OK) return s;
    if (!dense) return road__error(ROAD_ERR_INVALID_ARG, "road_rot_dense: output is NULL");
    const int64_t D = r->out, gs = r->group_size, h = gs / 2;
    memset(dense, 0, (size_t)D * (size_t)D * sizeof(float));
    for (int64_t g0 = 0; g0 < D; g0 += gs) {
        for (int64_t j = 0; j < h; j++) {
            int64_t a = g0 + j, b = a + h;
            dense[a * D + a] = r->c1[a];
            dense[a * D + b] = -r->c2[a];
            dense[b * D + b] = r->c1[b];
            dense[b * D + a] = r->c2[b];
        }
    }
    return ROAD_OK;
}
