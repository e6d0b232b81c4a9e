"""genaccel.models"""
