# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""Thin binding of the C++ mean-field solver (src/dense_crf.hpp).

Arguments are checked and converted by krahenbuhl2013/__init__.py; this layer only
requires C-contiguous arrays of the right dtype (typed memoryviews) and releases the GIL
for the whole computation.
"""
from libc.stdint cimport uint8_t


cdef extern from "dense_crf.hpp" namespace "dcrf" nogil:
    cdef cppclass CrfParams:
        int max_iterations
        float gaussian_sxy
        float gaussian_weight
        float bilateral_sxy
        float bilateral_srgb
        float bilateral_weight
        bint allow_avx2

    bint avx2_available()
    void mean_field_batch(const uint8_t* images, const float* unaries, float* q_out, int n_images,
                          int height, int width, int n_labels, const CrfParams& params,
                          int num_threads) except +


def mean_field(const uint8_t[:, :, :, ::1] images not None, const float[:, :, :, ::1] unaries not None,
               float[:, :, :, ::1] q_out not None, int max_iterations, float gaussian_sxy,
               float gaussian_weight, float bilateral_sxy, float bilateral_srgb, float bilateral_weight,
               int num_threads, bint allow_avx2=True):
    """Write the mean-field marginals of every image into q_out (N x H x W x C float32).

    images: N x H x W x 3 uint8; unaries: N x H x W x C float32 scores (energy = -score);
    all C-contiguous. allow_avx2=False forces the portable SSE kernels (for tests).
    C++ std::invalid_argument becomes ValueError.
    """
    if unaries.shape[0] != images.shape[0] or q_out.shape[0] != images.shape[0]:
        raise ValueError("mean_field: batch sizes differ: images %d, unaries %d, q_out %d"
                         % (images.shape[0], unaries.shape[0], q_out.shape[0]))
    if images.shape[3] != 3:
        raise ValueError("mean_field: images must have 3 channels, got %d" % images.shape[3])
    cdef int axis
    for axis in range(4):
        if unaries.shape[axis] != q_out.shape[axis]:
            raise ValueError("mean_field: q_out shape differs from unaries shape on axis %d: %d vs %d"
                             % (axis, q_out.shape[axis], unaries.shape[axis]))
    for axis in range(1, 3):
        if unaries.shape[axis] != images.shape[axis]:
            raise ValueError("mean_field: unaries and images differ on axis %d: %d vs %d"
                             % (axis, unaries.shape[axis], images.shape[axis]))
    if images.shape[0] == 0:
        return
    cdef CrfParams params
    params.max_iterations = max_iterations
    params.gaussian_sxy = gaussian_sxy
    params.gaussian_weight = gaussian_weight
    params.bilateral_sxy = bilateral_sxy
    params.bilateral_srgb = bilateral_srgb
    params.bilateral_weight = bilateral_weight
    params.allow_avx2 = allow_avx2
    cdef int n_images = <int>images.shape[0]
    cdef int height = <int>images.shape[1]
    cdef int width = <int>images.shape[2]
    cdef int n_labels = <int>unaries.shape[3]
    with nogil:
        mean_field_batch(&images[0, 0, 0, 0], &unaries[0, 0, 0, 0], &q_out[0, 0, 0, 0], n_images, height,
                         width, n_labels, params, num_threads)


def cpu_has_avx2():
    """Whether the AVX2+FMA kernels run on this CPU (otherwise the SSE ones do)."""
    return avx2_available()
