#ifndef CAFFE_INTERP_LAYER_HPP_
#define CAFFE_INTERP_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#ifdef __CUDACC__
#define CAFFE_INTERP_HOST_DEVICE __host__ __device__
#else
#define CAFFE_INTERP_HOST_DEVICE
#endif

namespace caffe {

/// Where output row (or column) `out_index` samples its input under
/// aligned-corners bilinear interpolation: the input index `first`, the step to
/// the second tap (0 on the last input row, 1 otherwise) and the weight of the
/// second tap. `ratio` is (in_size - 1) / (out_size - 1), or 0 for out_size 1.
struct InterpTap {
  int first;
  int step;
  float weight;
};

CAFFE_INTERP_HOST_DEVICE inline InterpTap interp_tap(int out_index, float ratio,
                                                     int in_size) {
  InterpTap tap;
  const float position = ratio * out_index;
  tap.first = static_cast<int>(position);
  if (tap.first > in_size - 1) tap.first = in_size - 1;
  tap.step = (tap.first < in_size - 1) ? 1 : 0;
  tap.weight = position - tap.first;
  return tap;
}

/// The four input taps of output pixel (y, x) within one plane: offsets of the
/// top-left tap and of its right / lower / lower-right neighbours, and their
/// bilinear weights. Forward is the weighted sum of the taps, backward scatters
/// the output gradient to them with the same weights (the exact adjoint).
struct InterpSample {
  int top_left, right, down, down_right;
  float w_top_left, w_right, w_down, w_down_right;
};

struct InterpGeometry {
  int in_width;                       // full input row length
  int crop_top, crop_left;            // -pad_beg
  int in_eff_height, in_eff_width;    // cropped window
  float ratio_y, ratio_x;             // (in_eff - 1) / (out - 1)
};

CAFFE_INTERP_HOST_DEVICE inline InterpSample interp_sample(
    const InterpGeometry& g, int y, int x) {
  const InterpTap ty = interp_tap(y, g.ratio_y, g.in_eff_height);
  const InterpTap tx = interp_tap(x, g.ratio_x, g.in_eff_width);
  InterpSample s;
  s.top_left = (g.crop_top + ty.first) * g.in_width + g.crop_left + tx.first;
  s.right = s.top_left + tx.step;
  s.down = s.top_left + ty.step * g.in_width;
  s.down_right = s.down + tx.step;
  s.w_top_left = (1 - ty.weight) * (1 - tx.weight);
  s.w_right = (1 - ty.weight) * tx.weight;
  s.w_down = ty.weight * (1 - tx.weight);
  s.w_down_right = ty.weight * tx.weight;
  return s;
}

inline float interp_ratio(int in_size, int out_size) {
  return out_size > 1 ? static_cast<float>(in_size - 1) / (out_size - 1) : 0.f;
}

/**
 * @brief Bilinear resizing of every channel with aligned corners
 *        (deeplab-v2 "Interp").
 *
 * bottom[0]: N x C x H x W input. Optional bottom[1]: any N' x C' x H' x W'
 * blob whose spatial size the output takes.
 * top[0]: N x C x H_out x W_out, with the size from interp_param: explicit
 * height and width; or, from the effective input in_eff = in + pad_beg +
 * pad_end (pads are <= 0 and crop the input), shrink
 * out = (in_eff - 1) / shrink_factor + 1, then zoom
 * out = out + (out - 1) * (zoom_factor - 1).
 *
 * Output pixel (y, x) samples input position (y * (in_eff_h - 1) / (out_h - 1),
 * x * (in_eff_w - 1) / (out_w - 1)) of the cropped window, so corners map onto
 * corners and an integer ratio samples input pixels exactly. Backward is the
 * exact adjoint of the forward map (contributions accumulate).
 */
template <typename Dtype>
class InterpLayer : public Layer<Dtype> {
 public:
  explicit InterpLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "Interp"; }
  virtual inline int MinBottomBlobs() const { return 1; }
  virtual inline int MaxBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int planes_;  // N * C
  int in_height_, in_width_;  // full input size
  int out_height_, out_width_;
  InterpGeometry geometry_;
};

}  // namespace caffe

#endif  // CAFFE_INTERP_LAYER_HPP_
