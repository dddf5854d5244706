// Small fixed-width float vectors (GCC/Clang vector extensions) for the mean-field inner
// loops. The kernels are templates on the vector type and force-inlined, so one source
// gives both a 4-lane build for the portable baseline (SSE4.2 on x86-64-v2) and an 8-lane
// build inside functions compiled with __attribute__((target("avx2,fma"))), chosen at run
// time. Loads and stores only assume 4-byte alignment.
#pragma once

#include <cstdint>

// Vector types wider than the baseline ISA trigger an ABI note on function boundaries;
// every function using them here is force-inlined, so there is no such boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

#define DCRF_INLINE inline __attribute__((always_inline))

namespace dcrf {

typedef float Float4 __attribute__((vector_size(16)));
typedef float Float8 __attribute__((vector_size(32)));

template <typename V>
struct LaneTraits;

template <>
struct LaneTraits<Float4> {
    static constexpr int kCount = 4;
    typedef float Unaligned __attribute__((vector_size(16), aligned(4), may_alias));
    typedef int32_t Int __attribute__((vector_size(16)));
};

template <>
struct LaneTraits<Float8> {
    static constexpr int kCount = 8;
    typedef float Unaligned __attribute__((vector_size(32), aligned(4), may_alias));
    typedef int32_t Int __attribute__((vector_size(32)));
};

template <typename V>
DCRF_INLINE V load(const float* from) {
    return *reinterpret_cast<const typename LaneTraits<V>::Unaligned*>(from);
}

template <typename V>
DCRF_INLINE void store(float* to, V value) {
    *reinterpret_cast<typename LaneTraits<V>::Unaligned*>(to) = value;
}

template <typename V>
DCRF_INLINE V broadcast(float value) {
    return V{} + value;
}

template <typename V>
DCRF_INLINE float horizontal_max(V value) {
    float largest = value[0];
    for (int i = 1; i < LaneTraits<V>::kCount; ++i) largest = largest < value[i] ? value[i] : largest;
    return largest;
}

template <typename V>
DCRF_INLINE float horizontal_sum(V value) {
    float total = 0.0f;
    for (int i = 0; i < LaneTraits<V>::kCount; ++i) total += value[i];
    return total;
}

// exp on every lane for arguments <= 0 (softmax after subtracting the maximum); arguments
// below -87.3 are clamped (about 1e-38 instead of a denormal or 0). Cephes-style:
// exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2)/2, degree-6 polynomial; relative
// error about 2e-7, like expf.
template <typename V>
DCRF_INLINE V exp_nonpositive(V x) {
    typedef typename LaneTraits<V>::Int IntV;
    const V lowest = broadcast<V>(-87.3f);
    x = x < lowest ? lowest : x;
    // n = round(x * log2(e)): adding 1.5 * 2^23 leaves the rounded integer in the low
    // mantissa bits.
    const V shifter = broadcast<V>(12582912.0f);
    const V shifted = x * 1.44269504088896341f + shifter;
    const V n = shifted - shifter;
    const IntV n_int = (IntV)shifted - (IntV)shifter;  // vector casts reinterpret the bits
    const V r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    V p = broadcast<V>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const IntV scale_bits = (n_int + 127) << 23;
    return p * (V)scale_bits;
}

// W consecutive floats (W a multiple of 8, known at compile time) held in registers.
template <int W, typename V>
struct ChannelChunk {
    static constexpr int kVectors = W / LaneTraits<V>::kCount;
    V lanes[kVectors];

    static DCRF_INLINE ChannelChunk zero() {
        ChannelChunk chunk;
        for (int i = 0; i < kVectors; ++i) chunk.lanes[i] = V{};
        return chunk;
    }
    static DCRF_INLINE ChannelChunk load_from(const float* from) {
        ChannelChunk chunk;
        for (int i = 0; i < kVectors; ++i) chunk.lanes[i] = load<V>(from + i * LaneTraits<V>::kCount);
        return chunk;
    }
    // from[0:W] where mask[i] != 0, fill elsewhere (from[i] is read either way).
    static DCRF_INLINE ChannelChunk load_masked(const float* from, const float* mask, float fill) {
        ChannelChunk chunk;
        const V fill_lanes = broadcast<V>(fill);
        for (int i = 0; i < kVectors; ++i) {
            const V value = load<V>(from + i * LaneTraits<V>::kCount);
            chunk.lanes[i] = load<V>(mask + i * LaneTraits<V>::kCount) != V{} ? value : fill_lanes;
        }
        return chunk;
    }
    DCRF_INLINE void store_to(float* to) const {
        for (int i = 0; i < kVectors; ++i) store<V>(to + i * LaneTraits<V>::kCount, lanes[i]);
    }
    // this += weight * row[0:W]
    DCRF_INLINE void add_scaled(float weight, const float* row) {
        const V w = broadcast<V>(weight);
        for (int i = 0; i < kVectors; ++i) lanes[i] += w * load<V>(row + i * LaneTraits<V>::kCount);
    }
    // centre + (minus + plus) / 2, the blur stencil
    static DCRF_INLINE ChannelChunk blurred(const ChannelChunk& centre, const ChannelChunk& minus,
                                            const ChannelChunk& plus) {
        ChannelChunk chunk;
        const V half = broadcast<V>(0.5f);
        for (int i = 0; i < kVectors; ++i) chunk.lanes[i] = centre.lanes[i] + half * (minus.lanes[i] + plus.lanes[i]);
        return chunk;
    }
    // this += weight * other
    DCRF_INLINE void add_scaled(float weight, const ChannelChunk& other) {
        const V w = broadcast<V>(weight);
        for (int i = 0; i < kVectors; ++i) lanes[i] += w * other.lanes[i];
    }
};

}  // namespace dcrf
