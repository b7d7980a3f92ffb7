"""Data tools without DALI or torch: listing and checking image datasets (:mod:`~pipelines.data.imagefiles`,
:mod:`~pipelines.data.verify`) and the built-in demo data (:mod:`~pipelines.data.demo_data`)."""
