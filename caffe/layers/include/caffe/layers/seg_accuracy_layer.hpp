#ifndef CAFFE_SEG_ACCURACY_LAYER_HPP_
#define CAFFE_SEG_ACCURACY_LAYER_HPP_

#include <set>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Segmentation accuracy of a batch (deeplab-v2 "SegAccuracy").
 *
 * bottom[0]: N x C x H x W scores; the prediction of a pixel is the arg max
 *            over C (the lowest class index on ties).
 * bottom[1]: N x 1 x H x W labels in [0, C), or one of the ignore_labels.
 * top[0]:    1 x 1 x 1 x 3 = [pixel accuracy,
 *            mean over classes present in the labels of TP / (TP + FN),
 *            mean over classes with a non-empty union of TP / (TP + FP + FN)],
 *            from one confusion matrix over the whole batch; ignored pixels do
 *            not count. All three are 0 when no pixel counts.
 * seg_accuracy_param { ignore_label: L } (repeatable). No backward.
 */
template <typename Dtype>
class SegAccuracyLayer : public Layer<Dtype> {
 public:
  explicit SegAccuracyLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SegAccuracy"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  std::set<int> ignore_labels_;
  vector<double> confusion_;  // C x C, row = label, column = prediction
};

}  // namespace caffe

#endif  // CAFFE_SEG_ACCURACY_LAYER_HPP_
