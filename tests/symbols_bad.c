/* tests/symbols_bad.c - planted violations for the symbols_selftest ctest (check_symbols.sh must
 * name both): a global without the road_ prefix, and a road_ name no public header declares. */
int helper_without_prefix(int x);
int road_not_in_any_header(int x);
int helper_without_prefix(int x) {
    return x + 1;
}
int road_not_in_any_header(int x) {
    return x + 2;
}
int road__fine_internal(int x);
int road__fine_internal(int x) {
    return x + 3;
}
