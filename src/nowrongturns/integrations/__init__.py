"""The recorder inside the training frameworks researchers use: a PyTorch Lightning callback
(`nowrongturns[lightning]`) and a Hugging Face `TrainerCallback` (`nowrongturns[transformers]`),
each writing through `nowrongturns.Recorder`. Each module imports its framework, so import the
one you use.
"""
