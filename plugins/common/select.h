/**
 * @file select.h
 * Order statistics shared by the detectors (zscore's median/MAD, likelihood's reference
 * quantile). Linked statically into each plugin (sn_plugin_common); not part of the ABI.
 */
#ifndef SENTINEL_PLUGIN_SELECT_H
#define SENTINEL_PLUGIN_SELECT_H

/** k-th smallest of a[0..n-1] (0-based), Hoare quickselect, in place: afterwards
 * a[0..k-1] <= a[k] <= a[k+1..n-1]. n >= 1, 0 <= k < n. */
double snp_select(double *a, long n, long k);

#endif
