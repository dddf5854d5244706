#include <vector>

#include "caffe/layers/interp_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void InterpLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const InterpParameter& param = this->layer_param_.interp_param();
  const string& name = this->layer_param_.name();
  CHECK_LE(param.pad_beg(), 0) << "Interp layer '" << name
      << "': pad_beg must be <= 0 (it crops the input), got " << param.pad_beg();
  CHECK_LE(param.pad_end(), 0) << "Interp layer '" << name
      << "': pad_end must be <= 0 (it crops the input), got " << param.pad_end();
  CHECK_GE(param.shrink_factor(), 1) << "Interp layer '" << name
      << "': shrink_factor must be >= 1, got " << param.shrink_factor();
  CHECK_GE(param.zoom_factor(), 1) << "Interp layer '" << name
      << "': zoom_factor must be >= 1, got " << param.zoom_factor();
  CHECK_EQ(param.has_height(), param.has_width()) << "Interp layer '" << name
      << "': give both height and width, or neither";
  const bool explicit_size = param.has_height();
  const bool factors = param.has_shrink_factor() || param.has_zoom_factor();
  CHECK(bottom.size() == 2 || explicit_size || factors)
      << "Interp layer '" << name << "': no output size: set height and "
      << "width, shrink_factor and/or zoom_factor, or give a second bottom";
  CHECK(!(bottom.size() == 2 && (explicit_size || factors)))
      << "Interp layer '" << name << "': a second bottom gives the output "
      << "size; do not also set height/width or factors";
  CHECK(!(explicit_size && factors)) << "Interp layer '" << name
      << "': set either height and width or shrink/zoom factors, not both";
}

template <typename Dtype>
void InterpLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const InterpParameter& param = this->layer_param_.interp_param();
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "Interp layer '" << name
      << "': bottom[0] must be N x C x H x W, got " << bottom[0]->shape_string();
  planes_ = bottom[0]->num() * bottom[0]->channels();
  in_height_ = bottom[0]->height();
  in_width_ = bottom[0]->width();
  const int in_eff_height = in_height_ + param.pad_beg() + param.pad_end();
  const int in_eff_width = in_width_ + param.pad_beg() + param.pad_end();
  CHECK_GT(in_eff_height, 0) << "Interp layer '" << name << "': padding "
      << param.pad_beg() << "/" << param.pad_end() << " crops all of the "
      << "input height " << in_height_;
  CHECK_GT(in_eff_width, 0) << "Interp layer '" << name << "': padding "
      << param.pad_beg() << "/" << param.pad_end() << " crops all of the "
      << "input width " << in_width_;
  if (bottom.size() == 2) {
    CHECK_EQ(bottom[1]->num_axes(), 4) << "Interp layer '" << name
        << "': bottom[1] must be 4-D, got " << bottom[1]->shape_string();
    out_height_ = bottom[1]->height();
    out_width_ = bottom[1]->width();
  } else if (param.has_height()) {
    out_height_ = param.height();
    out_width_ = param.width();
  } else {
    out_height_ = (in_eff_height - 1) / param.shrink_factor() + 1;
    out_width_ = (in_eff_width - 1) / param.shrink_factor() + 1;
    out_height_ += (out_height_ - 1) * (param.zoom_factor() - 1);
    out_width_ += (out_width_ - 1) * (param.zoom_factor() - 1);
  }
  CHECK_GT(out_height_, 0) << "Interp layer '" << name
      << "': output height must be positive, got " << out_height_;
  CHECK_GT(out_width_, 0) << "Interp layer '" << name
      << "': output width must be positive, got " << out_width_;
  geometry_.in_width = in_width_;
  geometry_.crop_top = -param.pad_beg();
  geometry_.crop_left = -param.pad_beg();
  geometry_.in_eff_height = in_eff_height;
  geometry_.in_eff_width = in_eff_width;
  geometry_.ratio_y = interp_ratio(in_eff_height, out_height_);
  geometry_.ratio_x = interp_ratio(in_eff_width, out_width_);
  top[0]->Reshape(bottom[0]->num(), bottom[0]->channels(), out_height_,
                  out_width_);
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* in = bottom[0]->cpu_data();
  Dtype* out = top[0]->mutable_cpu_data();
  const int in_plane = in_height_ * in_width_;
  const int out_plane = out_height_ * out_width_;
  for (int y = 0; y < out_height_; ++y) {
    for (int x = 0; x < out_width_; ++x) {
      const InterpSample s = interp_sample(geometry_, y, x);
      const Dtype* src = in;
      Dtype* dst = out + y * out_width_ + x;
      for (int p = 0; p < planes_; ++p, src += in_plane, dst += out_plane) {
        *dst = s.w_top_left * src[s.top_left] + s.w_right * src[s.right] +
               s.w_down * src[s.down] + s.w_down_right * src[s.down_right];
      }
    }
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  const Dtype* top_diff = top[0]->cpu_diff();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), bottom_diff);
  const int in_plane = in_height_ * in_width_;
  const int out_plane = out_height_ * out_width_;
  for (int y = 0; y < out_height_; ++y) {
    for (int x = 0; x < out_width_; ++x) {
      const InterpSample s = interp_sample(geometry_, y, x);
      const Dtype* src = top_diff + y * out_width_ + x;
      Dtype* dst = bottom_diff;
      for (int p = 0; p < planes_; ++p, src += out_plane, dst += in_plane) {
        dst[s.top_left] += s.w_top_left * *src;
        dst[s.right] += s.w_right * *src;
        dst[s.down] += s.w_down * *src;
        dst[s.down_right] += s.w_down_right * *src;
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(InterpLayer);
#endif

INSTANTIATE_CLASS(InterpLayer);
REGISTER_LAYER_CLASS(Interp);

}  // namespace caffe
