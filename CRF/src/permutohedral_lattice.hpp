// Permutohedral lattice for high-dimensional Gaussian filtering
// (Adams, Baek & Davis, "Fast High-Dimensional Filtering Using the Permutohedral
// Lattice", Eurographics 2010), in the variant used by Krähenbühl & Koltun's dense CRF:
// splat with barycentric weights onto the d+1 enclosing lattice vertices, blur with the
// [1/2, 1, 1/2] stencil along each of the d+1 lattice axes, slice back with the same
// weights times alpha = 1 / (1 + 2^-d).
//
// The lattice is built once from the point features and then only read, so several
// threads may filter with it at the same time. Filtering itself lives in dense_crf.cpp;
// this class only provides the index structures it needs, precomputed:
//   * per point: the d+1 vertex rows and barycentric weights (splat and slice);
//   * per lattice axis: the vertices as chains along that axis (each vertex's successor is
//     its neighbour one lattice step further), so a blur pass is one in-place sweep per
//     chain; vertices without neighbours on an axis are left out (the blur keeps them).
// Vertex rows are vertex index + 1; row 0 is reserved for an all-zero value row that
// stands in for neighbours that do not exist.
#pragma once

#include <cstdint>
#include <vector>

namespace dcrf {

class PermutohedralLattice {
public:
    PermutohedralLattice() = default;
    // features: n_points x dim floats, point-major (the d features of one point are
    // contiguous). Throws std::invalid_argument for dim < 1, n_points < 1 or features that
    // are not finite or too large.
    PermutohedralLattice(const float* features, int n_points, int dim) { build(features, n_points, dim); }

    // (Re)builds the lattice for these features, reusing the memory of the previous build.
    void build(const float* features, int n_points, int dim);

    int dim() const { return dim_; }
    int n_points() const { return n_points_; }
    int n_vertices() const { return n_vertices_; }
    // Slicing scale of the [1/2, 1, 1/2]^(d+1) blur: 1 / (1 + 2^-d).
    float alpha() const { return alpha_; }

    // (dim+1) vertex rows / barycentric weights of point p start at p*(dim+1).
    const std::vector<int32_t>& point_rows() const { return point_rows_; }
    const std::vector<float>& point_weights() const { return point_weights_; }

    // Chains along axis a: chain c is chain_rows(a)[chain_starts(a)[c] .. chain_starts(a)[c+1]),
    // vertex rows in lattice order (each the previous one's neighbour), length >= 2.
    const std::vector<int32_t>& chain_rows(int axis) const { return chain_rows_[axis]; }
    const std::vector<int32_t>& chain_starts(int axis) const { return chain_starts_[axis]; }

    // Lattice filter response to the all-ones signal at every point (alpha included):
    // the normaliser of Krähenbühl & Koltun's kernels.
    std::vector<float> filter_ones() const;

private:
    int n_points_ = 0;
    int dim_ = 0;
    int n_vertices_ = 0;
    float alpha_ = 1.0f;
    std::vector<int32_t> point_rows_;
    std::vector<float> point_weights_;
    std::vector<std::vector<int32_t>> chain_rows_;
    std::vector<std::vector<int32_t>> chain_starts_;
    std::vector<int32_t> successor_;        // build state: next vertex row along an axis
    std::vector<uint8_t> has_predecessor_;  // build state: row has a previous vertex
    // Build state, kept between builds for its memory: per point the nearest remainder-0
    // lattice point (d ints) and the rank of each coordinate; the vertex hash table.
    std::vector<int32_t> point_nearest_;
    std::vector<int8_t> point_rank_;
    struct HashSlot {
        int32_t vertex;
        uint32_t hash;
    };
    struct PackedSlot {
        uint64_t key;
        int32_t vertex;
    };
    std::vector<HashSlot> table_slots_;
    std::vector<PackedSlot> packed_slots_;
    std::vector<int32_t> table_keys_;
    std::vector<uint64_t> packed_keys_;

    // Vertex indices of every point's simplex and the blur chains, with either table.
    template <typename Table>
    void link_vertices(Table& table, const std::vector<int>& canonical);
};

}  // namespace dcrf
