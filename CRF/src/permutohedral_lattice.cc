#include "permutohedral_lattice.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace dcrf {

namespace {

// Open-addressing hash map (linear probing) from integer lattice keys (the first d
// coordinates of a lattice point; the last one is implied by the zero-sum constraint) to
// vertex indices. Slots keep the 32-bit hash, so most mismatches and every rehash go
// without touching the stored keys.
template <typename Slot>
class VertexTable {
public:
    // Uses (and clears) the given storage, keeping its capacity: lattices of natural images
    // have far fewer vertices than points, so the table starts small (or at the size a
    // previous build reached) and doubles when half full.
    VertexTable(int dim, std::vector<Slot>& slots, std::vector<int32_t>& keys) : dim_(dim), slots_(slots), keys_(keys) {
        slots_.assign(std::max<size_t>(slots_.size(), 1024), Slot{-1, 0});
        keys_.clear();
    }

    int size() const { return size_; }

    const int32_t* key(int vertex) const { return keys_.data() + static_cast<size_t>(vertex) * dim_; }

    int32_t find_or_insert(const int32_t* key) {
        if (2 * (static_cast<size_t>(size_) + 1) > slots_.size()) grow();
        const uint32_t h = hash(key);
        const size_t mask = slots_.size() - 1;
        for (size_t at = h & mask;; at = (at + 1) & mask) {
            Slot& slot = slots_[at];
            if (slot.vertex < 0) {
                slot.vertex = size_;
                slot.hash = h;
                keys_.insert(keys_.end(), key, key + dim_);
                return size_++;
            }
            if (slot.hash == h && same_key(slot.vertex, key)) return slot.vertex;
        }
    }

    // Vertex one lattice step along axis (-d on coordinate axis, +1 on the others; axis d
    // only moves the implied last coordinate) from `vertex`, or -1.
    int32_t find_successor(int vertex, int axis) {
        const int32_t* k = key(vertex);
        step_.resize(dim_);
        for (int i = 0; i < dim_; ++i) step_[i] = k[i] + 1;
        if (axis < dim_) step_[axis] = k[axis] - dim_;
        return find(step_.data());
    }

    int32_t find(const int32_t* key) const {
        const uint32_t h = hash(key);
        const size_t mask = slots_.size() - 1;
        for (size_t at = h & mask;; at = (at + 1) & mask) {
            const Slot& slot = slots_[at];
            if (slot.vertex < 0) return -1;
            if (slot.hash == h && same_key(slot.vertex, key)) return slot.vertex;
        }
    }

private:
    // Independent products per coordinate (no serial multiply chain), then one mixing step.
    uint32_t hash(const int32_t* key) const {
        static constexpr uint64_t kFactors[] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull,
                                                0xD6E8FEB86659FD93ull, 0xFF51AFD7ED558CCDull, 0xC4CEB9FE1A85EC53ull,
                                                0x94D049BB133111EBull, 0xBF58476D1CE4E5B9ull};
        uint64_t h = 0;
        for (int i = 0; i < dim_; ++i) h += static_cast<uint64_t>(static_cast<uint32_t>(key[i])) * kFactors[i & 7] + i;
        h ^= h >> 32;
        h *= 0xBF58476D1CE4E5B9ull;
        return static_cast<uint32_t>(h ^ (h >> 29));
    }

    bool same_key(int32_t vertex, const int32_t* key) const {
        const int32_t* stored = this->key(vertex);
        for (int i = 0; i < dim_; ++i)
            if (stored[i] != key[i]) return false;
        return true;
    }

    void grow() {
        std::vector<Slot> bigger(slots_.size() * 2, Slot{-1, 0});
        const size_t mask = bigger.size() - 1;
        for (const Slot& slot : slots_) {
            if (slot.vertex < 0) continue;
            size_t at = slot.hash & mask;
            while (bigger[at].vertex >= 0) at = (at + 1) & mask;
            bigger[at] = slot;
        }
        slots_.swap(bigger);
    }

    int dim_;
    int size_ = 0;
    std::vector<Slot>& slots_;
    std::vector<int32_t>& keys_;
    std::vector<int32_t> step_;
};

// The same map for keys whose coordinates fit, offset by low[i], into shift-separated bit
// fields of one 64-bit word (the usual case): hashing is one multiply, comparing one
// compare. The caller guarantees that the fields of every key, and of its successors,
// stay within [0, 2^bits[i]).
template <typename Slot>
class PackedVertexTable {
public:
    PackedVertexTable(int dim, const std::vector<int32_t>& low, const std::vector<int>& shift,
                      std::vector<Slot>& slots, std::vector<uint64_t>& vertex_keys)
        : dim_(dim), low_(low), shift_(shift), slots_(slots), vertex_keys_(vertex_keys), successor_step_(dim + 1) {
        slots_.assign(std::max<size_t>(slots_.size(), 1024), Slot{0, -1});
        vertex_keys_.clear();
        // A step along an axis adds a constant to the packed key: every field stays inside
        // its range, so there are no carries between fields.
        for (int axis = 0; axis <= dim; ++axis)
            for (int i = 0; i < dim; ++i)
                successor_step_[axis] += (i == axis ? -static_cast<uint64_t>(dim) : uint64_t{1}) << shift_[i];
    }

    int size() const { return static_cast<int>(vertex_keys_.size()); }

    int32_t find_or_insert(const int32_t* key) {
        if (2 * (vertex_keys_.size() + 1) > slots_.size()) grow();
        const uint64_t packed = pack(key);
        const size_t mask = slots_.size() - 1;
        for (size_t at = slot_of(packed) & mask;; at = (at + 1) & mask) {
            Slot& slot = slots_[at];
            if (slot.vertex < 0) {
                slot.key = packed;
                slot.vertex = size();
                vertex_keys_.push_back(packed);
                return slot.vertex;
            }
            if (slot.key == packed) return slot.vertex;
        }
    }

    // As VertexTable::find_successor.
    int32_t find_successor(int vertex, int axis) const {
        const uint64_t packed = vertex_keys_[vertex] + successor_step_[axis];
        const size_t mask = slots_.size() - 1;
        for (size_t at = slot_of(packed) & mask;; at = (at + 1) & mask) {
            const Slot& slot = slots_[at];
            if (slot.vertex < 0) return -1;
            if (slot.key == packed) return slot.vertex;
        }
    }

private:
    uint64_t pack(const int32_t* key) const {
        uint64_t packed = 0;
        for (int i = 0; i < dim_; ++i) packed |= static_cast<uint64_t>(key[i] - low_[i]) << shift_[i];
        return packed;
    }

    static size_t slot_of(uint64_t packed) {
        const uint64_t h = packed * 0x9E3779B97F4A7C15ull;
        return static_cast<size_t>(h ^ (h >> 32));
    }

    void grow() {
        std::vector<Slot> bigger(slots_.size() * 2, Slot{0, -1});
        const size_t mask = bigger.size() - 1;
        for (const Slot& slot : slots_) {
            if (slot.vertex < 0) continue;
            size_t at = slot_of(slot.key) & mask;
            while (bigger[at].vertex >= 0) at = (at + 1) & mask;
            bigger[at] = slot;
        }
        slots_.swap(bigger);
    }

    int dim_;
    const std::vector<int32_t>& low_;
    const std::vector<int>& shift_;
    std::vector<Slot>& slots_;
    std::vector<uint64_t>& vertex_keys_;
    std::vector<uint64_t> successor_step_;
};

// Lattice coordinates must stay far inside int32 (and float stays exact on integers
// below 2^24, so larger coordinates would be meaningless anyway).
constexpr float kMaxElevated = 16777216.0f;

}  // namespace

void PermutohedralLattice::build(const float* features, int n_points, int dim) {
    n_points_ = n_points;
    dim_ = dim;
    if (dim < 1 || n_points < 1)
        throw std::invalid_argument("PermutohedralLattice: need dim >= 1 and n_points >= 1, got dim=" +
                                    std::to_string(dim) + ", n_points=" + std::to_string(n_points));
    const int d = dim;
    const int d1 = dim + 1;
    alpha_ = 1.0f / (1.0f + std::pow(2.0f, -static_cast<float>(d)));

    // Elevation E (Adams et al. 2010, p.5) scaled so that the blur has unit standard
    // deviation in feature space: diagonal factor 1/sqrt((i+1)(i+2)) * sqrt(2/3)(d+1).
    const float inv_std_dev = static_cast<float>(std::sqrt(2.0 / 3.0) * d1);
    std::vector<float> elevation_scale(d);
    for (int i = 0; i < d; ++i)
        elevation_scale[i] = static_cast<float>(1.0 / std::sqrt(static_cast<double>((i + 2) * (i + 1))) * inv_std_dev);

    // canonical[r*(d+1) + i]: offset of coordinate i of the remainder-r vertex of the
    // canonical simplex.
    std::vector<int> canonical(static_cast<size_t>(d1) * d1);
    for (int r = 0; r <= d; ++r) {
        for (int i = 0; i <= d - r; ++i) canonical[r * d1 + i] = r;
        for (int i = d - r + 1; i <= d; ++i) canonical[r * d1 + i] = r - d1;
    }

    const size_t n_entries = static_cast<size_t>(n_points) * d1;
    point_rows_.resize(n_entries);
    point_weights_.resize(n_entries);
    point_nearest_.resize(static_cast<size_t>(n_points) * d);
    point_rank_.resize(n_entries);

    // Pass 1: the enclosing simplex of every point (nearest remainder-0 lattice point and
    // rank of the residual's coordinates) and its barycentric weights.
    std::vector<float> elevated(d1), nearest(d1), barycentric(d1 + 1);
    std::vector<int> rank(d1);
    std::vector<int32_t> low(d, std::numeric_limits<int32_t>::max()), high(d, std::numeric_limits<int32_t>::min());
    const float down_factor = 1.0f / static_cast<float>(d1);
    const float up_factor = static_cast<float>(d1);
    for (int p = 0; p < n_points; ++p) {
        const float* f = features + static_cast<size_t>(p) * d;
        float running_sum = 0.0f;
        for (int j = d; j > 0; --j) {
            const float scaled = f[j - 1] * elevation_scale[j - 1];
            elevated[j] = running_sum - static_cast<float>(j) * scaled;
            running_sum += scaled;
        }
        elevated[0] = running_sum;
        for (int i = 0; i <= d; ++i)
            if (!(std::fabs(elevated[i]) < kMaxElevated))
                throw std::invalid_argument("PermutohedralLattice: feature of point " + std::to_string(p) +
                                            " is not finite or too large for the lattice (|elevated| must be < 2^24)");

        // Nearest remainder-0 lattice point (coordinates multiple of d+1).
        float coordinate_sum = 0.0f;
        for (int i = 0; i <= d; ++i) {
            const float rounded = std::nearbyint(down_factor * elevated[i]);
            nearest[i] = rounded * up_factor;
            coordinate_sum += rounded;
        }

        // Rank of each coordinate of the residual in decreasing order.
        for (int i = 0; i <= d; ++i) rank[i] = 0;
        for (int i = 0; i < d; ++i) {
            const float residual_i = elevated[i] - nearest[i];
            for (int j = i + 1; j <= d; ++j) {
                const int i_smaller = residual_i < elevated[j] - nearest[j];
                rank[i] += i_smaller;
                rank[j] += 1 - i_smaller;
            }
        }

        // Move the point back onto the hyperplane sum(x) = 0 if rounding left it off.
        const int shift = static_cast<int>(coordinate_sum);
        for (int i = 0; i <= d; ++i) {
            rank[i] += shift;
            if (rank[i] < 0) {
                rank[i] += d1;
                nearest[i] += up_factor;
            } else if (rank[i] > d) {
                rank[i] -= d1;
                nearest[i] -= up_factor;
            }
        }

        // Barycentric coordinates in the enclosing simplex (Adams et al. 2010, p.10).
        for (int i = 0; i <= d + 1; ++i) barycentric[i] = 0.0f;
        for (int i = 0; i <= d; ++i) {
            const float v = (elevated[i] - nearest[i]) * down_factor;
            barycentric[d - rank[i]] += v;
            barycentric[d - rank[i] + 1] -= v;
        }
        barycentric[0] += 1.0f + barycentric[d + 1];

        std::copy(barycentric.begin(), barycentric.begin() + d1, point_weights_.begin() + static_cast<size_t>(p) * d1);
        std::copy(rank.begin(), rank.end(), point_rank_.begin() + static_cast<size_t>(p) * d1);
        for (int i = 0; i < d; ++i) {
            const int32_t coordinate = static_cast<int32_t>(nearest[i]);
            point_nearest_[static_cast<size_t>(p) * d + i] = coordinate;
            low[i] = std::min(low[i], coordinate);
            high[i] = std::max(high[i], coordinate);
        }
    }

    // Pass 2: vertex indices and blur neighbours, with 64-bit packed keys when the key
    // coordinates (vertices are within d+1 of the nearest points, their neighbours another
    // d+1 away) fit into 64 bits, else with keys of d ints.
    std::vector<int> shift(d);
    int total_bits = 0;
    for (int i = 0; i < d; ++i) {
        low[i] -= 2 * d1;
        const uint64_t span = static_cast<uint64_t>(static_cast<int64_t>(high[i]) + 2 * d1 - low[i]) + 1;
        int bits = 1;
        while (bits < 63 && (uint64_t{1} << bits) < span) ++bits;
        shift[i] = total_bits;
        total_bits += bits;
    }
    if (total_bits <= 64) {
        PackedVertexTable<PackedSlot> table(d, low, shift, packed_slots_, packed_keys_);
        link_vertices(table, canonical);
    } else {
        VertexTable<HashSlot> table(d, table_slots_, table_keys_);
        link_vertices(table, canonical);
    }
}

template <typename Table>
void PermutohedralLattice::link_vertices(Table& table, const std::vector<int>& canonical) {
    const int d = dim_;
    const int d1 = dim_ + 1;
    std::vector<int32_t> key(d1);
    for (int p = 0; p < n_points_; ++p) {
        const size_t first = static_cast<size_t>(p) * d1;
        const int32_t* nearest = point_nearest_.data() + static_cast<size_t>(p) * d;
        const int8_t* rank = point_rank_.data() + first;
        // Neighbouring points often share the enclosing simplex: then their vertices are
        // the previous point's.
        if (p > 0 && std::equal(nearest, nearest + d, nearest - d) && std::equal(rank, rank + d1, rank - d1)) {
            std::copy(point_rows_.begin() + (first - d1), point_rows_.begin() + first, point_rows_.begin() + first);
            continue;
        }
        for (int r = 0; r <= d; ++r) {
            for (int i = 0; i < d; ++i) key[i] = nearest[i] + canonical[r * d1 + rank[i]];
            point_rows_[first + r] = table.find_or_insert(key.data()) + 1;
        }
    }
    n_vertices_ = table.size();
    const int m = n_vertices_;

    // Blur chains: looking up each vertex's successor along the axis also tells which
    // vertices have a predecessor, i.e. where chains start.
    chain_rows_.resize(d1);
    chain_starts_.resize(d1);
    for (int a = 0; a <= d; ++a) {
        // successor_[row]: row of the next vertex (0: none); has_predecessor_[row].
        successor_.assign(static_cast<size_t>(m) + 1, 0);
        has_predecessor_.assign(static_cast<size_t>(m) + 1, 0);
        for (int v = 0; v < m; ++v) {
            const int32_t u = table.find_successor(v, a);
            if (u >= 0) {
                successor_[v + 1] = u + 1;
                has_predecessor_[u + 1] = 1;
            }
        }
        std::vector<int32_t>& rows = chain_rows_[a];
        std::vector<int32_t>& starts = chain_starts_[a];
        rows.clear();
        starts.clear();
        rows.resize(m);
        starts.resize(static_cast<size_t>(m / 2) + 1);
        int32_t n_rows = 0, n_chains = 0;
        for (int32_t row = 1; row <= m; ++row) {
            if (has_predecessor_[row] || successor_[row] == 0) continue;
            starts[n_chains++] = n_rows;
            for (int32_t at = row; at != 0; at = successor_[at]) rows[n_rows++] = at;
        }
        starts[n_chains] = n_rows;
        rows.resize(n_rows);
        starts.resize(static_cast<size_t>(n_chains) + 1);
    }
}

std::vector<float> PermutohedralLattice::filter_ones() const {
    const int d1 = dim_ + 1;
    std::vector<float> values(static_cast<size_t>(n_vertices_) + 1, 0.0f);
    for (size_t e = 0; e < point_rows_.size(); ++e) values[point_rows_[e]] += point_weights_[e];
    for (int a = 0; a < d1; ++a) {
        const std::vector<int32_t>& rows = chain_rows_[a];
        const std::vector<int32_t>& starts = chain_starts_[a];
        for (size_t c = 0; c + 1 < starts.size(); ++c) {
            float previous = 0.0f;
            for (int32_t i = starts[c]; i < starts[c + 1]; ++i) {
                const float current = values[rows[i]];
                const float next = i + 1 < starts[c + 1] ? values[rows[i + 1]] : 0.0f;
                values[rows[i]] = current + 0.5f * (previous + next);
                previous = current;
            }
        }
    }
    std::vector<float> response(n_points_);
    for (int p = 0; p < n_points_; ++p) {
        float sum = 0.0f;
        for (int j = 0; j < d1; ++j) {
            const size_t entry = static_cast<size_t>(p) * d1 + j;
            sum += point_weights_[entry] * values[point_rows_[entry]] * alpha_;
        }
        response[p] = sum;
    }
    return response;
}

}  // namespace dcrf
