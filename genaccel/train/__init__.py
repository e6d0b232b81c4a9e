"""genaccel.train"""
