#include "dense_crf.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "permutohedral_lattice.hpp"
#include "simd_lanes.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DCRF_CPU_RELAX() _mm_pause()
#define DCRF_AVX2_DISPATCH 1
#else
#define DCRF_CPU_RELAX() ((void)0)
#define DCRF_AVX2_DISPATCH 0
#endif

namespace dcrf {

namespace {

using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;

// Label channels are stored padded to a multiple of kChannelBlock and processed in chunks
// of at most kMaxChunk channels, each chunk by kernels unrolled for its exact width.
constexpr int kChannelBlock = 8;
constexpr int kMaxChunk = 32;
// Below this many pixels per thread a single image is not worth splitting.
constexpr int kMinPixelsPerThread = 16384;
// Busy-wait this many pause instructions at a barrier before yielding the core.
constexpr int kBarrierSpins = 4096;
constexpr int kGateClosed = 0, kGateOpen = 1, kGateAbort = 2;
// Feature dimensions of the two pairwise terms: (x, y) and (x, y, r, g, b).
constexpr int kSmoothDim = 2, kAppearanceDim = 5;

// Reusable barrier for a fixed team of threads: spins briefly, then yields (the machine
// may be shared with other work).
class SpinBarrier {
public:
    explicit SpinBarrier(int n_threads) : n_threads_(n_threads) {}

    void wait() {
        if (n_threads_ == 1) return;
        const unsigned generation = generation_.load(std::memory_order_acquire);
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
            arrived_.store(0, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
            return;
        }
        for (int spin = 0; generation_.load(std::memory_order_acquire) == generation; ++spin) {
            if (spin < kBarrierSpins)
                DCRF_CPU_RELAX();
            else
                std::this_thread::yield();
        }
    }

private:
    const int n_threads_;
    std::atomic<int> arrived_{0};
    std::atomic<unsigned> generation_{0};
};

// Calls body(std::integral_constant<int, W>()) for the chunk width W in {8, 16, 24, 32}.
template <typename Body>
DCRF_INLINE void with_chunk_width(int width, Body&& body) {
    switch (width) {
        case 8: body(std::integral_constant<int, 8>()); break;
        case 16: body(std::integral_constant<int, 16>()); break;
        case 24: body(std::integral_constant<int, 24>()); break;
        default: body(std::integral_constant<int, 32>()); break;
    }
}

// Calls body(width, first_channel) for each channel chunk of a row of `stride` floats.
template <typename Body>
DCRF_INLINE void for_each_chunk(int stride, Body&& body) {
    for (int c0 = 0; c0 < stride; c0 += kMaxChunk)
        with_chunk_width(std::min(kMaxChunk, stride - c0),
                         [&](auto width) __attribute__((always_inline)) { body(width, c0); });
}

// row <- softmax(row) over the real labels. Padding entries hold -inf on input (so they
// never win the maximum) and 0 on output; label_mask is 1 on labels and 0 on padding.
template <typename V>
DCRF_INLINE void softmax_row(float* row, const float* label_mask, int stride) {
    constexpr int kLanes = LaneTraits<V>::kCount;
    V largest = load<V>(row);
    for (int c = kLanes; c < stride; c += kLanes) {
        const V value = load<V>(row + c);
        largest = largest < value ? value : largest;
    }
    const V shift = broadcast<V>(horizontal_max(largest));
    V total = V{};
    for (int c = 0; c < stride; c += kLanes) {
        const V e = exp_nonpositive(load<V>(row + c) - shift) * load<V>(label_mask + c);
        store<V>(row + c, e);
        total += e;
    }
    const V inverse = broadcast<V>(1.0f / horizontal_sum(total));
    for (int c = 0; c < stride; c += kLanes) store<V>(row + c, load<V>(row + c) * inverse);
}

// Boundaries splitting the items [0, begin.size() - 1) into n_parts ranges of about equal
// work, begin being the non-decreasing prefix sums of the items' work.
std::vector<int> balanced_split(const std::vector<int32_t>& begin, int n_parts) {
    const int n_items = static_cast<int>(begin.size()) - 1;
    std::vector<int> split(n_parts + 1, n_items);
    split[0] = 0;
    for (int t = 1; t < n_parts; ++t) {
        const int64_t target = static_cast<int64_t>(begin.back()) * t / n_parts;
        split[t] = std::min(n_items, static_cast<int>(std::lower_bound(begin.begin(), begin.end(), target) - begin.begin()));
    }
    return split;
}

std::vector<int> even_split(int n_items, int n_parts) {
    std::vector<int> split(n_parts + 1);
    for (int t = 0; t <= n_parts; ++t) split[t] = static_cast<int>(static_cast<int64_t>(n_items) * t / n_parts);
    return split;
}

// One Potts pairwise term: its lattice, the per-point splat/slice weights (barycentric
// weight times the symmetric normaliser), and the vertex value buffers. Built once per
// image, reused by every iteration and label chunk.
//
// Buffers: a splat goes into values[s] and is blurred there in place; the pixel pass that
// slices values[s] splats the new Q into values[1 - s]. scratch[t] receives the splat of
// team thread t >= 1 (thread 0 splats straight into values), and the splats are summed
// before blurring. Every buffer is (n_vertices + 1) x stride; row 0 is unused.
struct PottsTerm {
    PermutohedralLattice lattice;
    std::vector<float> weights;  // per point entry: barycentric * norm(point)
    float slice_scale = 1.0f;    // alpha * Potts weight, applied to the sliced message
    AlignedFloats values[2];
    std::vector<AlignedFloats> scratch;
    std::vector<int> vertex_split;
    std::vector<std::vector<int>> chain_split;  // per axis: chains of each thread

    // (Re)builds the term for new features; memory of a previous image is reused.
    void prepare(const std::vector<float>& features, int n_points, int dim, float potts_weight, int stride,
                 int n_threads) {
        lattice.build(features.data(), n_points, dim);
        // Symmetric normalisation D^-1/2 K D^-1/2 with D = K 1 (+1e-20 as in the reference),
        // applied before splatting and after slicing.
        const std::vector<float> response = lattice.filter_ones();
        const int d1 = dim + 1;
        const auto& point_weights = lattice.point_weights();
        weights.resize(point_weights.size());
        for (int p = 0; p < n_points; ++p) {
            const float norm = static_cast<float>(1.0 / std::sqrt(response[p] + 1e-20));
            for (int j = 0; j < d1; ++j) {
                const size_t entry = static_cast<size_t>(p) * d1 + j;
                weights[entry] = point_weights[entry] * norm;
            }
        }
        slice_scale = lattice.alpha() * potts_weight;

        // Every row is zeroed by the pixel pass before it splats.
        const size_t n_values = (static_cast<size_t>(lattice.n_vertices()) + 1) * stride;
        for (auto& buffer : values) buffer.resize(n_values);
        scratch.resize(n_threads);  // scratch[0] stays empty: thread 0 splats into values
        for (int t = 1; t < n_threads; ++t) scratch[t].resize(n_values);
        vertex_split = even_split(lattice.n_vertices(), n_threads);
        chain_split.resize(n_axes());
        for (int axis = 0; axis < n_axes(); ++axis)
            chain_split[axis] = balanced_split(lattice.chain_starts(axis), n_threads);
    }

    int n_axes() const { return lattice.dim() + 1; }

    float* splat_target(int thread, int splat_buffer) {
        return thread == 0 ? values[splat_buffer].data() : scratch[thread].data();
    }

    // values[splat_buffer] += the other threads' splats, for this thread's vertex range.
    void gather_splats(int thread, int splat_buffer, int stride) {
        const size_t begin = (static_cast<size_t>(vertex_split[thread]) + 1) * stride;
        const size_t end = (static_cast<size_t>(vertex_split[thread + 1]) + 1) * stride;
        float* total = values[splat_buffer].data();
        for (size_t t = 1; t < scratch.size(); ++t) {
            const float* part = scratch[t].data();
            for (size_t i = begin; i < end; ++i) total[i] += part[i];
        }
    }

    // One [1/2, 1, 1/2] pass along lattice axis `axis`, in place in values[buffer], over this
    // thread's chains: each vertex gets old + (old predecessor + old successor) / 2, the
    // old values carried along the chain in registers.
    template <int W, typename V>
    DCRF_INLINE void blur(int thread, int buffer, int axis, int stride, int c0) {
        typedef ChannelChunk<W, V> Chunk;
        float* vals = values[buffer].data() + c0;
        const int32_t* rows = lattice.chain_rows(axis).data();
        const int32_t* starts = lattice.chain_starts(axis).data();
        for (int c = chain_split[axis][thread]; c < chain_split[axis][thread + 1]; ++c) {
            const int32_t last = starts[c + 1] - 1;
            auto previous = Chunk::zero();
            auto current = Chunk::load_from(vals + static_cast<size_t>(rows[starts[c]]) * stride);
            for (int32_t i = starts[c]; i < last; ++i) {
                const auto next = Chunk::load_from(vals + static_cast<size_t>(rows[i + 1]) * stride);
                Chunk::blurred(current, previous, next).store_to(vals + static_cast<size_t>(rows[i]) * stride);
                previous = current;
                current = next;
            }
            Chunk::blurred(current, previous, Chunk::zero()).store_to(vals + static_cast<size_t>(rows[last]) * stride);
        }
    }

    // logits += this term's message to point p: slice_scale * sum_j weight_j * blurred row_j.
    template <int W, typename V>
    DCRF_INLINE void add_message(int p, const float* blurred, int stride, int c0, ChannelChunk<W, V>& logits) const {
        const int d1 = n_axes();
        const int32_t* rows = lattice.point_rows().data() + static_cast<size_t>(p) * d1;
        const float* w = weights.data() + static_cast<size_t>(p) * d1;
        auto message = ChannelChunk<W, V>::zero();
        for (int j = 0; j < d1; ++j) message.add_scaled(w[j], blurred + static_cast<size_t>(rows[j]) * stride + c0);
        logits.add_scaled(slice_scale, message);
    }

    // target rows of point p's vertices += weight_j * q (one channel chunk).
    template <int W, typename V>
    DCRF_INLINE void splat(int p, const float* q, float* target, int stride, int c0) const {
        const int d1 = n_axes();
        const int32_t* rows = lattice.point_rows().data() + static_cast<size_t>(p) * d1;
        const float* w = weights.data() + static_cast<size_t>(p) * d1;
        const auto value = ChannelChunk<W, V>::load_from(q + c0);
        for (int j = 0; j < d1; ++j) {
            float* row = target + static_cast<size_t>(rows[j]) * stride + c0;
            auto sum = ChannelChunk<W, V>::load_from(row);
            sum.add_scaled(w[j], value);
            sum.store_to(row);
        }
    }
};

// Mean-field inference for one image with a team of n_threads threads. Each iteration is
// one pass over the pixels (slice the blurred messages, softmax, splat the new Q for the
// next iteration) followed by the blur passes; Q itself is never stored between passes.
class ImageSolver {
public:
    // A solver for images of one size; solve() may be called for many images in turn and
    // reuses its buffers.
    ImageSolver(int height, int width, int n_labels, const CrfParams& params, int n_threads)
        : height_(height),
          width_(width),
          n_pixels_(height * width),
          n_labels_(n_labels),
          stride_((n_labels + kChannelBlock - 1) / kChannelBlock * kChannelBlock),
          n_threads_(params.max_iterations > 0 ? n_threads : 1),
          max_iterations_(params.max_iterations),
          use_avx2_(params.allow_avx2 && avx2_supported()),
          params_(params),
          barrier_(n_threads_) {
        label_mask_.assign(stride_, 0.0f);
        std::fill(label_mask_.begin(), label_mask_.begin() + n_labels, 1.0f);
        pixel_split_ = even_split(n_pixels_, n_threads_);
        terms_.push_back(std::make_unique<PottsTerm>());  // smoothness (Gaussian) term
        terms_.push_back(std::make_unique<PottsTerm>());  // appearance (bilateral) term
    }

    // image: height x width x 3, unary: height x width x n_labels, q_out: same as unary.
    void solve(const uint8_t* image, const float* unary, float* q_out) {
        unary_ = unary;
        q_out_ = q_out;
        if (max_iterations_ > 0) build_terms(image);
        run();
    }

private:
    void run() {
        // Helpers wait at a start gate so that a failed thread start can call the whole
        // team off before anyone enters a barrier.
        std::atomic<int> gate{kGateClosed};
        std::vector<std::thread> helpers;
        auto helper_body = [this, &gate](int t) {
            int state;
            while ((state = gate.load(std::memory_order_acquire)) == kGateClosed) std::this_thread::yield();
            if (state == kGateOpen) iterate(t);
        };
        try {
            helpers.reserve(n_threads_ - 1);
            for (int t = 1; t < n_threads_; ++t) helpers.emplace_back(helper_body, t);
        } catch (...) {
            gate.store(kGateAbort, std::memory_order_release);
            for (auto& helper : helpers) helper.join();
            throw;
        }
        gate.store(kGateOpen, std::memory_order_release);
        iterate(0);
        for (auto& helper : helpers) helper.join();
    }

    static bool avx2_supported() {
#if DCRF_AVX2_DISPATCH
        static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        return supported;
#else
        return false;
#endif
    }

    void build_terms(const uint8_t* image) {
        smooth_features_.resize(static_cast<size_t>(n_pixels_) * kSmoothDim);
        appearance_features_.resize(static_cast<size_t>(n_pixels_) * kAppearanceDim);
        for (int y = 0; y < height_; ++y) {
            for (int x = 0; x < width_; ++x) {
                const size_t p = static_cast<size_t>(y) * width_ + x;
                float* smooth = smooth_features_.data() + kSmoothDim * p;
                smooth[0] = static_cast<float>(x) / params_.gaussian_sxy;
                smooth[1] = static_cast<float>(y) / params_.gaussian_sxy;
                float* appearance = appearance_features_.data() + kAppearanceDim * p;
                appearance[0] = static_cast<float>(x) / params_.bilateral_sxy;
                appearance[1] = static_cast<float>(y) / params_.bilateral_sxy;
                for (int c = 0; c < 3; ++c)
                    appearance[2 + c] = static_cast<float>(image[3 * p + c]) / params_.bilateral_srgb;
            }
        }
        auto build_smooth = [&] {
            terms_[0]->prepare(smooth_features_, n_pixels_, kSmoothDim, params_.gaussian_weight, stride_, n_threads_);
        };
        auto build_appearance = [&] {
            terms_[1]->prepare(appearance_features_, n_pixels_, kAppearanceDim, params_.bilateral_weight, stride_,
                              n_threads_);
        };
        if (n_threads_ == 1) {
            build_smooth();
            build_appearance();
            return;
        }
        // The two lattices are independent: build them at the same time.
        std::exception_ptr helper_error;
        std::thread helper([&] {
            try {
                build_appearance();
            } catch (...) {
                helper_error = std::current_exception();
            }
        });
        std::exception_ptr own_error;
        try {
            build_smooth();
        } catch (...) {
            own_error = std::current_exception();
        }
        helper.join();
        if (own_error) std::rethrow_exception(own_error);
        if (helper_error) std::rethrow_exception(helper_error);
    }

    void iterate(int t) {
#if DCRF_AVX2_DISPATCH
        if (use_avx2_) {
            iterate_avx2(t);
            return;
        }
#endif
        iterate_baseline(t);
    }

    void iterate_baseline(int t) { iterate_with<Float4>(t); }
#if DCRF_AVX2_DISPATCH
    __attribute__((target("avx2,fma"))) void iterate_avx2(int t) { iterate_with<Float8>(t); }
#endif

    // Body of thread t of the team, V the SIMD vector type. Phases, separated by barriers:
    // pixels (Q0 = softmax(unary), splat) | sum splats | blur axis 0 | ... | blur axis d |
    // pixels (slice, softmax, splat or output) | sum splats | blur ... (maxiter times).
    template <typename V>
    DCRF_INLINE void iterate_with(int t) {
        const size_t n_terms = terms_.size();
        int splat_buffer[2] = {0, 0};
        AlignedFloats row(stride_);
        pixel_pass<V>(t, /*with_messages=*/false, /*last=*/max_iterations_ == 0, splat_buffer, row.data());
        for (int it = 0; it < max_iterations_; ++it) {
            if (n_threads_ > 1) {
                barrier_.wait();
                for (size_t k = 0; k < n_terms; ++k) terms_[k]->gather_splats(t, splat_buffer[k], stride_);
            }
            barrier_.wait();
            for (int axis = 0; axis < max_axes_; ++axis) {
                for (size_t k = 0; k < n_terms; ++k) {
                    PottsTerm& term = *terms_[k];
                    if (axis >= term.n_axes()) continue;
                    for_each_chunk(stride_, [&](auto width, int c0) __attribute__((always_inline)) {
                        term.template blur<decltype(width)::value, V>(t, splat_buffer[k], axis, stride_, c0);
                    });
                }
                barrier_.wait();
            }
            pixel_pass<V>(t, /*with_messages=*/true, /*last=*/it + 1 == max_iterations_, splat_buffer, row.data());
        }
    }

    // For this thread's pixels: Q = softmax(unary + messages) (messages from the blurred
    // buffers if with_messages); then either write Q out (last) or splat it into fresh
    // splat buffers, whose indices are updated in splat_buffer.
    template <typename V>
    DCRF_INLINE void pixel_pass(int t, bool with_messages, bool last, int* splat_buffer, float* row) {
        const size_t n_terms = terms_.size();
        const float* blurred[2] = {nullptr, nullptr};
        float* target[2] = {nullptr, nullptr};
        for (size_t k = 0; k < n_terms; ++k) {
            PottsTerm& term = *terms_[k];
            if (with_messages) {
                blurred[k] = term.values[splat_buffer[k]].data();
                splat_buffer[k] = 1 - splat_buffer[k];
            }
            if (!last) {
                target[k] = term.splat_target(t, splat_buffer[k]);
                std::fill(target[k], target[k] + term.values[0].size(), 0.0f);
            }
        }
        // Pixels whose padded row (stride floats from p * n_labels) lies inside the unary
        // array are read in place, the padding lanes masked to -inf; the last few are copied.
        const size_t n_values = static_cast<size_t>(n_pixels_) * n_labels_;
        const float negative_infinity = -std::numeric_limits<float>::infinity();
        for (int p = pixel_split_[t]; p < pixel_split_[t + 1]; ++p) {
            const float* unary_row = unary_ + static_cast<size_t>(p) * n_labels_;
            if (static_cast<size_t>(p) * n_labels_ + stride_ > n_values) {
                std::copy(unary_row, unary_row + n_labels_, row);
                std::fill(row + n_labels_, row + stride_, negative_infinity);
                unary_row = row;
            }
            for_each_chunk(stride_, [&](auto width, int c0) __attribute__((always_inline)) {
                constexpr int W = decltype(width)::value;
                auto logits =
                    ChannelChunk<W, V>::load_masked(unary_row + c0, label_mask_.data() + c0, negative_infinity);
                if (with_messages)
                    for (size_t k = 0; k < n_terms; ++k)
                        terms_[k]->template add_message<W, V>(p, blurred[k], stride_, c0, logits);
                logits.store_to(row + c0);
            });
            softmax_row<V>(row, label_mask_.data(), stride_);
            if (last) {
                std::copy(row, row + n_labels_, q_out_ + static_cast<size_t>(p) * n_labels_);
            } else {
                for_each_chunk(stride_, [&](auto width, int c0) __attribute__((always_inline)) {
                    for (size_t k = 0; k < n_terms; ++k)
                        terms_[k]->template splat<decltype(width)::value, V>(p, row, target[k], stride_, c0);
                });
            }
        }
    }

    const float* unary_ = nullptr;  // n_pixels x n_labels scores of the current image (not owned)
    float* q_out_ = nullptr;        // where its marginals go
    const int height_;
    const int width_;
    const int n_pixels_;
    const int n_labels_;
    const int stride_;
    const int n_threads_;
    const int max_iterations_;
    const bool use_avx2_;
    const CrfParams params_;
    const int max_axes_ = std::max(kSmoothDim, kAppearanceDim) + 1;  // blur passes per iteration
    SpinBarrier barrier_;
    std::vector<float> label_mask_;  // stride: 1 on labels, 0 on padding
    std::vector<int> pixel_split_;
    std::vector<std::unique_ptr<PottsTerm>> terms_;
    std::vector<float> smooth_features_, appearance_features_;
};

void check_arguments(int n_images, int height, int width, int n_labels, const CrfParams& params, int num_threads) {
    auto fail = [](const std::string& message) { throw std::invalid_argument("mean_field_batch: " + message); };
    if (n_images < 0) fail("n_images must be >= 0, got " + std::to_string(n_images));
    if (height < 1 || width < 1)
        fail("image must be at least 1x1, got " + std::to_string(height) + "x" + std::to_string(width));
    if (n_labels < 1) fail("n_labels must be >= 1, got " + std::to_string(n_labels));
    // Lattice entries (pixels x 6) are indexed with int32.
    if (static_cast<int64_t>(height) * width * 6 > std::numeric_limits<int32_t>::max())
        fail("image too large: " + std::to_string(height) + "x" + std::to_string(width));
    if (num_threads < 1) fail("num_threads must be >= 1, got " + std::to_string(num_threads));
    if (params.max_iterations < 0) fail("max_iterations must be >= 0, got " + std::to_string(params.max_iterations));
    const float positive[] = {params.gaussian_sxy, params.bilateral_sxy, params.bilateral_srgb};
    for (float value : positive)
        if (!(std::isfinite(value) && value > 0.0f)) fail("kernel standard deviations must be finite and > 0");
    if (!std::isfinite(params.gaussian_weight) || !std::isfinite(params.bilateral_weight))
        fail("Potts weights must be finite");
}

}  // namespace

bool avx2_available() {
#if DCRF_AVX2_DISPATCH
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

void mean_field_batch(const uint8_t* images, const float* unaries, float* q_out, int n_images, int height, int width,
                      int n_labels, const CrfParams& params, int num_threads) {
    check_arguments(n_images, height, width, n_labels, params, num_threads);
    if (n_images == 0) return;
    const size_t n_pixels = static_cast<size_t>(height) * width;
    const size_t image_size = n_pixels * 3;
    const size_t unary_size = n_pixels * n_labels;

    const int n_workers = std::min(n_images, num_threads);
    const int threads_per_image =
        std::max(1, std::min(num_threads / n_workers, static_cast<int>(n_pixels / kMinPixelsPerThread)));

    auto solve = [&](ImageSolver& solver, int i) {
        solver.solve(images + i * image_size, unaries + i * unary_size, q_out + i * unary_size);
    };
    if (n_workers == 1) {
        ImageSolver solver(height, width, n_labels, params, threads_per_image);
        for (int i = 0; i < n_images; ++i) solve(solver, i);
        return;
    }
    std::atomic<int> next_image{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto work = [&] {
        try {
            ImageSolver solver(height, width, n_labels, params, threads_per_image);
            for (int i = next_image++; i < n_images && !failed.load(); i = next_image++) solve(solver, i);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!first_error) first_error = std::current_exception();
            failed = true;
        }
    };
    std::vector<std::thread> workers;
    try {
        workers.reserve(n_workers - 1);
        for (int w = 1; w < n_workers; ++w) workers.emplace_back(work);
    } catch (...) {
        // Could not start every worker: those running and this thread finish the batch.
    }
    work();
    for (auto& worker : workers) worker.join();
    if (first_error) std::rethrow_exception(first_error);
}

}  // namespace dcrf
