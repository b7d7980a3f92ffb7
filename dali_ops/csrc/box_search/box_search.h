// fn.occlusion.box_search(saliency, draws[, map_index], method=...): the DALI shell, CPU and CUDA.
//
// SaliencyMix peak box, Fong & Vedaldi max window, KeepAugment selective cut / paste (the methods in
// box_search_cpu.h).  The kernels are DALI-free: box_search_cpu.{h,cc} (one map per pool thread) and
// box_search_gpu.cuh (one launch per batch, the CPU kernel's boxes bit for bit); here the arguments
// and inputs are checked (Setup, shared by both backends) and the rows handed to them.
//
// Why C++ and not DALI's numba_function: the numba CPU operator runs its samples one after the other
// on one thread, and DALI 2.4's GPU numba plugin refuses a CUDA 13 toolkit.  The operator is a pure
// function of its inputs (the random draws arrive as an input), hence a StatelessOperator: pipelines
// that use it can be checkpointed.

#ifndef OCCLUSION_BOX_SEARCH_BOX_SEARCH_H_
#define OCCLUSION_BOX_SEARCH_BOX_SEARCH_H_

#include <vector>

#include "box_search/box_search_cpu.h"
#include "box_search/box_search_params.h"
#include "dali/pipeline/operator/checkpointing/stateless_operator.h"

namespace occlusion {

/// box_search's arguments, parsed and checked once; shared by both backends.
struct BoxSearchArgs : kernels::SearchParams {
  bool per_row_size;  // `size` is an argument input: one side per row (KeepCutMix)
  explicit BoxSearchArgs(const ::dali::OpSpec &spec);
  bool keep() const { return method == kernels::kSearchKeepCut || method == kernels::kSearchKeepPaste; }
  /// The side row `i` searches: `size`, or its per-row value (checked).
  int Size(const ::dali::OpSpec &spec, const ::dali::Workspace &ws, int i) const;
};

/// Setup of box_search on both backends: checks `saliency`, `draws` (their values too on the CPU)
/// and the CPU input `map_index`; returns the map each row searches (-1: none).
template <typename Backend>
std::vector<int> SetupBoxSearch(const BoxSearchArgs &args, const ::dali::Workspace &ws,
                                std::vector<::dali::OutputDesc> &output_desc);

class BoxSearch : public ::dali::StatelessOperator<::dali::CPUBackend> {
 public:
  explicit BoxSearch(const ::dali::OpSpec &spec)
      : ::dali::StatelessOperator<::dali::CPUBackend>(spec), args_(spec) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    map_index_ = SetupBoxSearch<::dali::CPUBackend>(args_, ws, output_desc);
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  BoxSearchArgs args_;
  std::vector<kernels::SearchScratch> scratch_;  // one per pool thread
  std::vector<int> map_index_;  // per row: the map it searches, -1 for none
};

/// box_search on the GPU: one launch for the batch (box_search_gpu.cuh), the same boxes as the CPU
/// operator.  `map_index` stays a CPU input (the map pointers are resolved on the host).
class BoxSearchGPU : public ::dali::StatelessOperator<::dali::GPUBackend> {
 public:
  explicit BoxSearchGPU(const ::dali::OpSpec &spec)
      : ::dali::StatelessOperator<::dali::GPUBackend>(spec), args_(spec) {}

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc,
                 const ::dali::Workspace &ws) override {
    map_index_ = SetupBoxSearch<::dali::GPUBackend>(args_, ws, output_desc);
    return true;
  }
  void RunImpl(::dali::Workspace &ws) override;

 private:
  BoxSearchArgs args_;
  std::vector<int> map_index_;
};

}  // namespace occlusion

#endif  // OCCLUSION_BOX_SEARCH_BOX_SEARCH_H_
