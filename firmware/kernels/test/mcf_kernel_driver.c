/* Test driver of the kernel library: runs kernel calls described on stdin, writes their results to stdout.
 *
 * Host only (stdio, malloc): tests/test_kernels.py builds it with AddressSanitizer + UBSan and feeds it
 * random cases whose expected outputs come from the numpy reference. Every array is a separate heap block
 * of its exact size, so any read or write past an array's end is caught.
 *
 * Input, native byte order, repeated until end of file:
 *   int32 op; int32 alias; int32 out_bytes; int32 n_scalars; int64 scalars[n_scalars];
 *   int32 n_arrays; then per array: int32 n_bytes; uint8 bytes[n_bytes]
 * alias >= 0 makes the output the array of that index (in-place call); else a fresh out_bytes block.
 * Output per record: int32 status; int32 out_bytes; uint8 output[out_bytes].
 * Exit status: 0 on success, 1 on a malformed input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcf_kernels.h"
#include "mcf_math.h"

enum {
    OP_LINEAR,
    OP_PATCH_EMBED,
    OP_ADD,
    OP_LUT,
    OP_LAYERNORM,
    OP_SOFTMAX,
    OP_ATTENTION,
    OP_MEAN_POOL,
    OP_COPY,
    OP_ISQRT64, /* mcf_math.h's mcf_isqrt64 on an array of uint64 */
    OP_COUNT
};

#define MAX_SCALARS 16
#define MAX_ARRAYS 8

static int read_i32(int32_t *value) {
    return fread(value, sizeof *value, 1, stdin) == 1;
}

static int fail(const char *what) {
    fprintf(stderr, "mcf_kernel_driver: %s\n", what);
    return 1;
}

static int32_t i32(int64_t value) {
    return (int32_t)value;
}

static mcf_status run(int32_t op, const int64_t *s, void **a, int8_t *out, int32_t out_bytes) {
    switch (op) {
        case OP_LINEAR: {
            const mcf_linear_dims dims = {i32(s[0]), i32(s[1]), i32(s[2])};
            const mcf_linear_params params = {i32(s[3]), i32(s[4])};
            const mcf_channel_quant quant = {(const int32_t *)a[3], (const int8_t *)a[4]};
            return mcf_linear_s8(&dims, &params, &quant, a[0], a[1], a[2], out);
        }
        case OP_PATCH_EMBED: {
            const mcf_patch_embed_dims dims = {i32(s[0]), i32(s[1]), i32(s[2]), i32(s[3]), i32(s[4]), 0};
            const mcf_linear_params params = {i32(s[5]), i32(s[6])};
            const mcf_channel_quant quant = {(const int32_t *)a[3], (const int8_t *)a[4]};
            return mcf_patch_embed_s8(&dims, &params, &quant, a[0], a[1], a[2], out);
        }
        case OP_ADD: {
            const mcf_add_params params = {i32(s[0]), i32(s[1]), i32(s[2]), i32(s[3]), i32(s[4]), i32(s[5])};
            return mcf_add_s8(&params, a[0], a[1], out, i32(s[6]));
        }
        case OP_LUT:
            return mcf_lut_s8(a[0], a[1], out, i32(s[0]));
        case OP_LAYERNORM: {
            const mcf_dims dims = {i32(s[0]), i32(s[1])};
            const mcf_layernorm_params params = {i32(s[2]), s[3], i32(s[4]), i32(s[5]), i32(s[6])};
            return mcf_layernorm_s8(&dims, &params, a[0], a[1], a[2], out);
        }
        case OP_SOFTMAX:
            return mcf_softmax_s8(a[0], a[1], out, i32(s[0]));
        case OP_ATTENTION: {
            const mcf_attention_dims dims = {i32(s[0]), i32(s[1]), i32(s[2])};
            const mcf_attention_params params = {i32(s[3]), i32(s[4]), i32(s[5]),  i32(s[6]), i32(s[7]),
                                                 i32(s[8]), i32(s[9]), i32(s[10]), i32(s[11])};
            const int32_t scratch_bytes = mcf_attention_s8_get_buffer_size(&dims);
            void *scratch = malloc(scratch_bytes > 0 ? (size_t)scratch_bytes : 1u);
            if (scratch == NULL) {
                return MCF_ERR_ARG;
            }
            const mcf_status status = mcf_attention_s8(&dims, &params, a[0], a[1], a[2], a[3], out, scratch);
            free(scratch);
            return status;
        }
        case OP_MEAN_POOL: {
            const mcf_dims dims = {i32(s[0]), i32(s[1])};
            const mcf_pool_params params = {i32(s[2]), i32(s[3]), i32(s[4]), i32(s[5])};
            return mcf_mean_pool_s8(&dims, &params, a[0], out);
        }
        case OP_COPY:
            return mcf_copy_s8(a[0], out, i32(s[0]));
        case OP_ISQRT64: {
            const uint64_t *values = a[0];
            for (int32_t i = 0; i < out_bytes / 8; i++) {
                const uint64_t root = mcf_isqrt64(values[i]);
                memcpy(out + 8 * i, &root, sizeof root);
            }
            return MCF_OK;
        }
        default:
            return MCF_ERR_ARG;
    }
}

int main(void) {
    int32_t op;
    while (read_i32(&op)) {
        int32_t alias, out_bytes, n_scalars, n_arrays;
        int64_t scalars[MAX_SCALARS] = {0};
        void *arrays[MAX_ARRAYS] = {NULL};
        int32_t sizes[MAX_ARRAYS] = {0};
        if (!read_i32(&alias) || !read_i32(&out_bytes) || !read_i32(&n_scalars) || op < 0 || op >= OP_COUNT ||
            out_bytes < 0 || n_scalars < 0 || n_scalars > MAX_SCALARS ||
            fread(scalars, sizeof scalars[0], (size_t)n_scalars, stdin) != (size_t)n_scalars ||
            !read_i32(&n_arrays) || n_arrays < 0 || n_arrays > MAX_ARRAYS) {
            return fail("malformed record header");
        }
        for (int32_t i = 0; i < n_arrays; i++) {
            if (!read_i32(&sizes[i]) || sizes[i] < 0) {
                return fail("malformed array size");
            }
            arrays[i] = malloc(sizes[i] > 0 ? (size_t)sizes[i] : 1u);
            if (arrays[i] == NULL || fread(arrays[i], 1, (size_t)sizes[i], stdin) != (size_t)sizes[i]) {
                return fail("truncated array");
            }
        }
        if (alias >= n_arrays || (alias >= 0 && sizes[alias] < out_bytes)) {
            return fail("bad alias");
        }
        int8_t *out = alias >= 0 ? arrays[alias] : malloc(out_bytes > 0 ? (size_t)out_bytes : 1u);
        if (out == NULL) {
            return fail("out of memory");
        }
        const int32_t status = run(op, scalars, arrays, out, out_bytes);
        if (fwrite(&status, sizeof status, 1, stdout) != 1 ||
            fwrite(&out_bytes, sizeof out_bytes, 1, stdout) != 1 ||
            fwrite(out, 1, (size_t)out_bytes, stdout) != (size_t)out_bytes) {
            return fail("write failed");
        }
        if (alias < 0) {
            free(out);
        }
        for (int32_t i = 0; i < n_arrays; i++) {
            free(arrays[i]);
        }
    }
    return 0;
}
