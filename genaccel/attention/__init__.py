"""genaccel.attention"""
