/*
 * A stand-in for DuckDB's `hashfuncs` community extension: the scalar functions
 * xxh32(VARCHAR) -> UINTEGER and xxh64(VARCHAR) -> UBIGINT (seed 0), which Metaxy's
 * DuckDB store calls for its default hash algorithms.
 *
 * Why: Metaxy 0.1.11's DuckDBMetadataStore installs `hashfuncs` from DuckDB's community
 * repository on every open, and that repository is not reachable from the benchmark
 * machine (only PyPI is). The harness compiles this file against the C API headers of the
 * pinned duckdb sdist and hands it to Metaxy through its own `extensions=` option (a
 * local repository), so Metaxy's native SQL engine runs unchanged. Results are checked
 * against polars-hash (the Polars engine's xxhash) by the harness before use.
 *
 * xxHash (XXH32, XXH64) follows the public specification by Yann Collet
 * (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md); written here from
 * the specification, little-endian only.
 */
#include "duckdb_extension.h"

#include <stdint.h>
#include <string.h>

DUCKDB_EXTENSION_EXTERN

#define P32_1 0x9E3779B1U
#define P32_2 0x85EBCA77U
#define P32_3 0xC2B2AE3DU
#define P32_4 0x27D4EB2FU
#define P32_5 0x165667B1U

#define P64_1 0x9E3779B185EBCA87ULL
#define P64_2 0xC2B2AE3D27D4EB4FULL
#define P64_3 0x165667B19E3779F9ULL
#define P64_4 0x85EBCA77C2B2AE63ULL
#define P64_5 0x27D4EB2F165667C5ULL

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint32_t read32(const unsigned char *p) {
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t read64(const unsigned char *p) {
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t round32(uint32_t acc, uint32_t lane) {
	acc += lane * P32_2;
	return rotl32(acc, 13) * P32_1;
}

static uint32_t xxh32(const unsigned char *p, size_t len) {
	const unsigned char *end = p + len;
	uint32_t h;
	if (len >= 16) {
		uint32_t v1 = P32_1 + P32_2, v2 = P32_2, v3 = 0, v4 = 0U - P32_1;
		const unsigned char *limit = end - 16;
		do {
			v1 = round32(v1, read32(p));
			v2 = round32(v2, read32(p + 4));
			v3 = round32(v3, read32(p + 8));
			v4 = round32(v4, read32(p + 12));
			p += 16;
		} while (p <= limit);
		h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
	} else {
		h = P32_5;
	}
	h += (uint32_t)len;
	for (; p + 4 <= end; p += 4) {
		h = rotl32(h + read32(p) * P32_3, 17) * P32_4;
	}
	for (; p < end; p++) {
		h = rotl32(h + (uint32_t)(*p) * P32_5, 11) * P32_1;
	}
	h ^= h >> 15;
	h *= P32_2;
	h ^= h >> 13;
	h *= P32_3;
	h ^= h >> 16;
	return h;
}

static inline uint64_t round64(uint64_t acc, uint64_t lane) {
	acc += lane * P64_2;
	return rotl64(acc, 31) * P64_1;
}

static inline uint64_t merge64(uint64_t acc, uint64_t v) {
	acc ^= round64(0, v);
	return acc * P64_1 + P64_4;
}

static uint64_t xxh64(const unsigned char *p, size_t len) {
	const unsigned char *end = p + len;
	uint64_t h;
	if (len >= 32) {
		uint64_t v1 = P64_1 + P64_2, v2 = P64_2, v3 = 0, v4 = 0ULL - P64_1;
		const unsigned char *limit = end - 32;
		do {
			v1 = round64(v1, read64(p));
			v2 = round64(v2, read64(p + 8));
			v3 = round64(v3, read64(p + 16));
			v4 = round64(v4, read64(p + 24));
			p += 32;
		} while (p <= limit);
		h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
		h = merge64(h, v1);
		h = merge64(h, v2);
		h = merge64(h, v3);
		h = merge64(h, v4);
	} else {
		h = P64_5;
	}
	h += (uint64_t)len;
	for (; p + 8 <= end; p += 8) {
		h ^= round64(0, read64(p));
		h = rotl64(h, 27) * P64_1 + P64_4;
	}
	if (p + 4 <= end) {
		h ^= (uint64_t)read32(p) * P64_1;
		h = rotl64(h, 23) * P64_2 + P64_3;
		p += 4;
	}
	for (; p < end; p++) {
		h ^= (uint64_t)(*p) * P64_5;
		h = rotl64(h, 11) * P64_1;
	}
	h ^= h >> 33;
	h *= P64_2;
	h ^= h >> 29;
	h *= P64_3;
	h ^= h >> 32;
	return h;
}

static inline const unsigned char *string_bytes(duckdb_string_t *s, uint32_t *len) {
	*len = s->value.inlined.length;
	return (const unsigned char *)(*len <= 12 ? s->value.inlined.inlined : s->value.pointer.ptr);
}

/* One loop for both widths: NULL in, NULL out. */
#define HASH_FUNCTION(NAME, TYPE, HASH)                                                                     \
	static void NAME##_function(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output) { \
		(void)info;                                                                                            \
		idx_t rows = duckdb_data_chunk_get_size(input);                                                        \
		duckdb_vector strings = duckdb_data_chunk_get_vector(input, 0);                                        \
		duckdb_string_t *values = (duckdb_string_t *)duckdb_vector_get_data(strings);                         \
		uint64_t *valid = duckdb_vector_get_validity(strings);                                                 \
		TYPE *out = (TYPE *)duckdb_vector_get_data(output);                                                    \
		uint64_t *out_valid = NULL;                                                                            \
		for (idx_t row = 0; row < rows; row++) {                                                               \
			if (valid && !duckdb_validity_row_is_valid(valid, row)) {                                          \
				if (!out_valid) {                                                                              \
					duckdb_vector_ensure_validity_writable(output);                                            \
					out_valid = duckdb_vector_get_validity(output);                                            \
				}                                                                                              \
				duckdb_validity_set_row_invalid(out_valid, row);                                               \
				continue;                                                                                      \
			}                                                                                                  \
			uint32_t len;                                                                                      \
			const unsigned char *bytes = string_bytes(&values[row], &len);                                     \
			out[row] = (TYPE)HASH(bytes, len);                                                                 \
		}                                                                                                      \
	}

HASH_FUNCTION(xxh32, uint32_t, xxh32)
HASH_FUNCTION(xxh64, uint64_t, xxh64)

static void register_hash(duckdb_connection connection, const char *name, duckdb_type result,
                          duckdb_scalar_function_t body) {
	duckdb_scalar_function function = duckdb_create_scalar_function();
	duckdb_scalar_function_set_name(function, name);
	duckdb_logical_type varchar = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
	duckdb_logical_type returned = duckdb_create_logical_type(result);
	duckdb_scalar_function_add_parameter(function, varchar);
	duckdb_scalar_function_set_return_type(function, returned);
	duckdb_destroy_logical_type(&varchar);
	duckdb_destroy_logical_type(&returned);
	duckdb_scalar_function_set_function(function, body);
	duckdb_register_scalar_function(connection, function);
	duckdb_destroy_scalar_function(&function);
}

DUCKDB_EXTENSION_ENTRYPOINT(duckdb_connection connection, duckdb_extension_info info,
                            struct duckdb_extension_access *access) {
	(void)info;
	(void)access;
	register_hash(connection, "xxh32", DUCKDB_TYPE_UINTEGER, xxh32_function);
	register_hash(connection, "xxh64", DUCKDB_TYPE_UBIGINT, xxh64_function);
	return true;
}
