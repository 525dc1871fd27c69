/*  =========================================================================
    geo.h - distances on the Earth and the cell grid of the geo index

    A room is found by search when the search point lies within the room's
    radius of its centre. stored indexes each active room under the one grid
    cell that holds its centre; a search reads the cells that cover a circle
    of the largest room radius around the point, then keeps the rooms whose
    own radius reaches it (geo_distance_m).

    The grid: rows of GEO_CELL_DEG degrees of latitude, each row cut into as
    many columns as keep its cells about GEO_CELL_DEG wide at the row's
    equator-side edge, so cells stay near-square in metres everywhere and a
    row near a pole has few columns, not thousands. A cell id packs the row
    (high 32 bits) and the column (low 32 bits); ids sort row by row, which
    is how stored lays out its index keys.
    =========================================================================
*/

#ifndef NEARCHAT_GEO_H_INCLUDED
#define NEARCHAT_GEO_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GEO_EARTH_RADIUS_M  6371008.8       //  mean Earth radius (IUGG)
#define GEO_CELL_DEG        0.005           //  about 556 m of latitude

typedef uint64_t geo_cell_t;

//  Great-circle distance in metres between two points in degrees
//  (haversine). Accurate to well under a metre at chat-room scales.
double
    geo_distance_m (double lat1, double lon1, double lat2, double lon2);

//  The cell that holds a point. Latitude in [-90, 90], longitude in
//  [-180, 180] (180 and -180 are the same meridian and the same cell).
geo_cell_t
    geo_cell_of (double latitude, double longitude);

//  Write into cells the ids of a set of cells that together hold every point
//  within radius_m of (latitude, longitude), each id once, in ascending order.
//  Handles circles that reach a pole or cross the 180th meridian. Writes at
//  most max ids and returns how many the cover needs (so a return above max
//  means the array was too small). radius_m is in [0, 1000000].
size_t
    geo_cover (double latitude, double longitude, double radius_m,
               geo_cell_t *cells, size_t max);

//  Self-test of this module.
void
    geo_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
