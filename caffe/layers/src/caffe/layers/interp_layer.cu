#include <vector>

#include "caffe/layers/interp_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per output pixel and plane; both passes use the same taps as the
// CPU code (interp_tap), so CPU and GPU results agree to rounding.
template <typename Dtype>
__global__ void InterpForwardKernel(const int count, const Dtype* in,
    const int in_height, const int in_width, const int crop_top,
    const int crop_left, const int in_eff_height, const int in_eff_width,
    const float ratio_y, const float ratio_x, const int out_height,
    const int out_width, Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % out_width;
    const int y = (index / out_width) % out_height;
    const int plane = index / (out_width * out_height);
    const InterpTap ty = interp_tap(y, ratio_y, in_eff_height);
    const InterpTap tx = interp_tap(x, ratio_x, in_eff_width);
    const Dtype wy1 = ty.weight, wy0 = 1 - wy1;
    const Dtype wx1 = tx.weight, wx0 = 1 - wx1;
    const Dtype* src = in + plane * in_height * in_width +
        (crop_top + ty.first) * in_width + crop_left + tx.first;
    const int down = ty.step * in_width;
    out[index] = wy0 * (wx0 * src[0] + wx1 * src[tx.step]) +
                 wy1 * (wx0 * src[down] + wx1 * src[down + tx.step]);
  }
}

template <typename Dtype>
__global__ void InterpBackwardKernel(const int count, const Dtype* top_diff,
    const int in_height, const int in_width, const int crop_top,
    const int crop_left, const int in_eff_height, const int in_eff_width,
    const float ratio_y, const float ratio_x, const int out_height,
    const int out_width, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % out_width;
    const int y = (index / out_width) % out_height;
    const int plane = index / (out_width * out_height);
    const InterpTap ty = interp_tap(y, ratio_y, in_eff_height);
    const InterpTap tx = interp_tap(x, ratio_x, in_eff_width);
    const Dtype wy1 = ty.weight, wy0 = 1 - wy1;
    const Dtype wx1 = tx.weight, wx0 = 1 - wx1;
    Dtype* dst = bottom_diff + plane * in_height * in_width +
        (crop_top + ty.first) * in_width + crop_left + tx.first;
    const int down = ty.step * in_width;
    const Dtype g = top_diff[index];
    atomicAdd(dst, wy0 * wx0 * g);
    atomicAdd(dst + tx.step, wy0 * wx1 * g);
    atomicAdd(dst + down, wy1 * wx0 * g);
    atomicAdd(dst + down + tx.step, wy1 * wx1 * g);
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  InterpForwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), in_height_, in_width_, crop_top_,
      crop_left_, in_eff_height_, in_eff_width_,
      interp_ratio(in_eff_height_, out_height_),
      interp_ratio(in_eff_width_, out_width_), out_height_, out_width_,
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  Dtype* bottom_diff = bottom[0]->mutable_gpu_diff();
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom_diff);
  const int count = top[0]->count();
  InterpBackwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), in_height_, in_width_, crop_top_,
      crop_left_, in_eff_height_, in_eff_width_,
      interp_ratio(in_eff_height_, out_height_),
      interp_ratio(in_eff_width_, out_width_), out_height_, out_width_,
      bottom_diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(InterpLayer);

}  // namespace caffe
