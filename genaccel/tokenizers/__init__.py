"""genaccel.tokenizers"""
