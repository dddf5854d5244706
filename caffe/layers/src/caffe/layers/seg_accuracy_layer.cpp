#include <algorithm>
#include <vector>

#include "caffe/layers/seg_accuracy_layer.hpp"

namespace caffe {

template <typename Dtype>
void SegAccuracyLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const SegAccuracyParameter& param =
      this->layer_param_.seg_accuracy_param();
  ignore_labels_.clear();
  for (int i = 0; i < param.ignore_label_size(); ++i) {
    ignore_labels_.insert(param.ignore_label(i));
  }
}

template <typename Dtype>
void SegAccuracyLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const string& name = this->layer_param_.name();
  CHECK_EQ(bottom[0]->num_axes(), 4) << "SegAccuracy layer '" << name
      << "': scores must be N x C x H x W, got " << bottom[0]->shape_string();
  CHECK_EQ(bottom[1]->num_axes(), 4) << "SegAccuracy layer '" << name
      << "': labels must be N x 1 x H x W, got " << bottom[1]->shape_string();
  CHECK(bottom[1]->num() == bottom[0]->num() && bottom[1]->channels() == 1 &&
        bottom[1]->height() == bottom[0]->height() &&
        bottom[1]->width() == bottom[0]->width())
      << "SegAccuracy layer '" << name << "': labels must be "
      << bottom[0]->num() << " x 1 x " << bottom[0]->height() << " x "
      << bottom[0]->width() << " to match the scores "
      << bottom[0]->shape_string() << ", got " << bottom[1]->shape_string();
  const int classes = bottom[0]->channels();
  confusion_.assign(static_cast<size_t>(classes) * classes, 0.0);
  top[0]->Reshape(1, 1, 1, 3);
}

template <typename Dtype>
void SegAccuracyLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* scores = bottom[0]->cpu_data();
  const Dtype* labels = bottom[1]->cpu_data();
  const int num = bottom[0]->num();
  const int classes = bottom[0]->channels();
  const int spatial = bottom[0]->height() * bottom[0]->width();
  std::fill(confusion_.begin(), confusion_.end(), 0.0);
  double counted = 0;
  for (int n = 0; n < num; ++n) {
    const Dtype* image_scores = scores + n * classes * spatial;
    for (int i = 0; i < spatial; ++i) {
      const int label = static_cast<int>(labels[n * spatial + i]);
      if (ignore_labels_.count(label)) continue;
      CHECK(label >= 0 && label < classes) << "SegAccuracy layer '"
          << this->layer_param_.name() << "': label " << label
          << " at image " << n << ", pixel " << i << " is outside [0, "
          << classes << ") and not an ignore_label";
      int best = 0;
      for (int c = 1; c < classes; ++c) {
        if (image_scores[c * spatial + i] > image_scores[best * spatial + i]) {
          best = c;
        }
      }
      confusion_[label * classes + best] += 1;
      counted += 1;
    }
  }
  double correct = 0, recall_sum = 0, iou_sum = 0;
  int present = 0, nonempty = 0;
  for (int c = 0; c < classes; ++c) {
    double label_total = 0, predicted_total = 0;
    for (int k = 0; k < classes; ++k) {
      label_total += confusion_[c * classes + k];
      predicted_total += confusion_[k * classes + c];
    }
    const double hits = confusion_[c * classes + c];
    correct += hits;
    if (label_total > 0) {
      recall_sum += hits / label_total;
      ++present;
    }
    const double union_size = label_total + predicted_total - hits;
    if (union_size > 0) {
      iou_sum += hits / union_size;
      ++nonempty;
    }
  }
  Dtype* out = top[0]->mutable_cpu_data();
  out[0] = counted > 0 ? correct / counted : 0;
  out[1] = present > 0 ? recall_sum / present : 0;
  out[2] = nonempty > 0 ? iou_sum / nonempty : 0;
}

template <typename Dtype>
void SegAccuracyLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  for (int i = 0; i < propagate_down.size(); ++i) {
    if (propagate_down[i]) {
      LOG(FATAL) << "SegAccuracy layer '" << this->layer_param_.name()
                 << "' cannot backpropagate to bottom " << i;
    }
  }
}

INSTANTIATE_CLASS(SegAccuracyLayer);
REGISTER_LAYER_CLASS(SegAccuracy);

}  // namespace caffe
