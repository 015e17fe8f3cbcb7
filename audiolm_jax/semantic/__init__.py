"""Semantic tokens: w2v-BERT, its pre-training losses, and the k-means tokenizer.

  w2v_bert.py   the model (log-mel front end, conv feature encoder, Gumbel quantizer,
                contrastive and masked-prediction conformer modules) and `W2VBertConfig`
  losses.py     span masking, contrastive (InfoNCE + diversity) and masked-prediction losses
  tokenizer.py  the 25 Hz frame rule, feature normalisation, k-means fit, `SemanticTokenizer`,
                and the MFCC baseline features
"""
