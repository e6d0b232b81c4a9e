"""genaccel.speculative"""
