"""genaccel.data"""
