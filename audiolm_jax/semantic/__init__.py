"""Semantic tokens: w2v-BERT, its pre-training losses, the k-means tokenizer and its fitting.

  w2v_bert.py   the model (log-mel front end, conv feature encoder, Gumbel quantizer,
                contrastive and masked-prediction conformer modules) and `W2VBertConfig`
  losses.py     span masking, contrastive (InfoNCE + diversity) and masked-prediction losses
  tokenizer.py  `SemanticTokenizer` (features -> normalise -> nearest centroid), feature
                extractors and the MFCC baseline
  fitting.py    feature statistics and mini-batch k-means, from any batches of audio

Training lives in `audiolm_jax.tasks.w2v_bert`, loading in `audiolm_jax.pretrained`.
"""
