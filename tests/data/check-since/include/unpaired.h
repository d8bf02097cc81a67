/* Problem 6: a header next to api.h that no --pair names. */
