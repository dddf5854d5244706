// Mean-field inference in the fully connected CRF of Krähenbühl & Koltun (NIPS 2011)
// with the two Potts pairwise terms of their 2-D model (DenseCRF2D):
//
//   E(x) = sum_i psi_u(x_i) + sum_{i<j} [x_i != x_j] (w_g k_g(f_i, f_j) + w_b k_b(f_i, f_j))
//   k_g: Gaussian on (x/s_g, y/s_g)                       ("smoothness", weight w_g)
//   k_b: Gaussian on (x/s_b, y/s_b, r/s_c, g/s_c, b/s_c)  ("appearance", weight w_b)
//
// Each kernel is symmetrically normalised, K_norm = D^-1/2 K D^-1/2 with D = diag(K 1)
// (NORMALIZE_SYMMETRIC of Krähenbühl & Koltun, ICML 2013), and evaluated with the
// permutohedral lattice. One mean-field step is
//
//   Q_i(l) <- softmax_l( unary_i(l) + sum_k w_k sum_j K_norm,k(i, j) Q_j(l) )
//
// with unary = -psi_u (scores: probabilities or log-probabilities), starting from
// Q = softmax(unary). This is exactly the update of Krähenbühl's DenseCRF::inference with
// PottsCompatibility (which, like the reference code, keeps the j = i term).
#pragma once

#include <cstdint>

namespace dcrf {

struct CrfParams {
    int max_iterations = 10;
    float gaussian_sxy = 3.0f;     // spatial std of the smoothness kernel, pixels
    float gaussian_weight = 3.0f;  // its Potts weight
    float bilateral_sxy = 80.0f;   // spatial std of the appearance kernel, pixels
    float bilateral_srgb = 13.0f;  // colour std of the appearance kernel, intensity levels
    float bilateral_weight = 10.0f;
    bool allow_avx2 = true;  // use the AVX2+FMA kernels when the CPU has them
};

// Whether this CPU can run the AVX2+FMA kernels (x86-64 only).
bool avx2_available();

// Marginals Q for a batch of images.
//   images:  n_images x height x width x 3 uint8, C-contiguous
//   unaries: n_images x height x width x n_labels float32 scores, C-contiguous
//   q_out:   n_images x height x width x n_labels float32, C-contiguous (written)
// Images are processed by up to num_threads native threads (num_threads >= 1); a single
// large image uses the threads inside its own iterations. Throws std::invalid_argument on
// bad sizes or parameters, std::bad_alloc when out of memory. Does not touch Python.
void mean_field_batch(const uint8_t* images, const float* unaries, float* q_out, int n_images, int height,
                      int width, int n_labels, const CrfParams& params, int num_threads);

}  // namespace dcrf
