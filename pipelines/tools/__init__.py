"""Tools on top of the loader: pictures of batches (:mod:`~pipelines.tools.show`) and the occlusion-robustness
sweep of a trained model (:mod:`~pipelines.tools.occlusion_sweep`)."""
