#include <vector>

#include "caffe/layers/interp_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per output pixel and plane; both passes use interp_sample, as the
// CPU code does, so CPU and GPU results agree to rounding.
template <typename Dtype>
__global__ void InterpForwardKernel(const int count, const Dtype* in,
    const int in_plane, const int out_height, const int out_width,
    const InterpGeometry geometry, Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % out_width;
    const int y = (index / out_width) % out_height;
    const Dtype* src = in + (index / (out_width * out_height)) * in_plane;
    const InterpSample s = interp_sample(geometry, y, x);
    out[index] = s.w_top_left * src[s.top_left] + s.w_right * src[s.right] +
                 s.w_down * src[s.down] + s.w_down_right * src[s.down_right];
  }
}

template <typename Dtype>
__global__ void InterpBackwardKernel(const int count, const Dtype* top_diff,
    const int in_plane, const int out_height, const int out_width,
    const InterpGeometry geometry, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int x = index % out_width;
    const int y = (index / out_width) % out_height;
    Dtype* dst = bottom_diff + (index / (out_width * out_height)) * in_plane;
    const InterpSample s = interp_sample(geometry, y, x);
    const Dtype g = top_diff[index];
    atomicAdd(dst + s.top_left, Dtype(s.w_top_left) * g);
    atomicAdd(dst + s.right, Dtype(s.w_right) * g);
    atomicAdd(dst + s.down, Dtype(s.w_down) * g);
    atomicAdd(dst + s.down_right, Dtype(s.w_down_right) * g);
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  InterpForwardKernel<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), in_height_ * in_width_, out_height_,
      out_width_, geometry_, top[0]->mutable_gpu_data());
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
      count, top[0]->gpu_diff(), in_height_ * in_width_, out_height_,
      out_width_, geometry_, bottom_diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(InterpLayer);

}  // namespace caffe
