"""Context-free replay: samples of the base model drawn from the BOS token alone.

Mixed into fine-tuning, their NLL under the model being trained is an unbiased
estimate (up to a constant) of KL(p_base || p_model): see docs/methods.md section 2.
"""
